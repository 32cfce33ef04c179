#!/bin/sh
# The entrypoint of the corpus's redis replica, in the spirit of
# docker-library's: flags or a config file alone mean redis-server; started
# as root, it gives the working directory (/data) to redis and runs itself
# again as redis through gosu.
set -e

case "${1:-}" in -* | *.conf) set -- redis-server "$@" ;; esac

if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . ! -user redis -exec chown redis {} +
	exec gosu redis "$0" "$@"
fi

if [ "${1:-}" = redis-server ]; then
	# The official image builds redis with protected mode off by default:
	# in a container the port is only reached where it is published, and
	# a default of "on" refuses every client that is not on loopback. It
	# changes the compiled-in default rather than passing a flag, so that
	# plain "redis-server" keeps every other default (saving on SIGTERM
	# among them). Debian's redis-server is built with it on, so here the
	# flag is added unless the command names protected-mode itself.
	case " $* " in
	*" --protected-mode "*) ;;
	*) set -- "$@" --protected-mode no ;;
	esac
fi

# Data redis writes is the user's only, unless a umask was chosen.
if [ "$(umask)" = 0022 ]; then
	umask 0077
fi

exec "$@"
