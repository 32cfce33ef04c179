#!/bin/sh
# The entrypoint of the corpus's nginx replica, in the spirit of the
# official image's: before nginx starts, the files in /docker-entrypoint.d
# are taken in name order (an executable *.sh is run, an executable *.envsh
# is sourced, so that it can export variables for nginx; anything else is
# left alone), so that an image built FROM it configures nginx by adding a
# file there. NGINX_ENTRYPOINT_QUIET_LOGS=1 keeps them quiet.
set -e

if [ -n "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
	exec 3>/dev/null
else
	exec 3>&1
fi

case "${1:-}" in
nginx | nginx-debug)
	scripts=$(find /docker-entrypoint.d/ -follow -mindepth 1 -maxdepth 1 -type f 2>/dev/null | sort)
	if [ -z "$scripts" ]; then
		echo >&3 "$0: /docker-entrypoint.d/ holds no files: nothing to configure"
	else
		echo >&3 "$0: configuring nginx with the files in /docker-entrypoint.d/"
		old_ifs=$IFS
		IFS='
'
		for f in $scripts; do
			IFS=$old_ifs
			case "$f" in
			*.envsh | *.sh)
				if [ ! -x "$f" ]; then
					echo >&3 "$0: skipping $f: not executable"
				elif [ "${f%.envsh}" != "$f" ]; then
					echo >&3 "$0: sourcing $f"
					# shellcheck disable=SC1090
					. "$f"
				else
					echo >&3 "$0: launching $f"
					"$f"
				fi
				;;
			*) echo >&3 "$0: skipping $f" ;;
			esac
		done
		IFS=$old_ifs
		echo >&3 "$0: configuration complete; ready for start up"
	fi
	;;
esac

exec "$@"
