#!/bin/sh
# The entrypoint of the corpus's postgres replica, in the spirit of
# docker-library's: started as root, it gives the data directories to the
# postgres user and runs itself again as postgres through gosu. On an empty
# $PGDATA it then initializes a cluster: initdb with the superuser password
# from POSTGRES_PASSWORD, password logins over TCP, the database
# POSTGRES_DB, and the files in /docker-entrypoint-initdb.d run against a
# server that listens on its socket only. Last, it execs the command.
set -eu

me=$0
say() { printf '%s: %s\n' "$me" "$*"; }

# Flags alone mean "postgres with these flags".
case "${1:-}" in -*) set -- postgres "$@" ;; esac

# Only a server start is set up; anything else (a shell, postgres --version)
# runs as it is.
only_asks() {
	for arg; do
		case "$arg" in -'?' | --help | --describe-config | -V | --version) return 0 ;; esac
	done
	return 1
}
if [ "${1:-}" != postgres ] || only_asks "$@"; then
	exec "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:=}"
: "${POSTGRES_INITDB_ARGS:=}"
: "${POSTGRES_HOST_AUTH_METHOD:=}"
sockets=/var/run/postgresql

mkdir -p "$PGDATA" "$sockets"
# postgres insists on a private data directory; the socket directory is
# shared with the group. Neither may fail the start (a read-only mount, a
# --user without rights): postgres says what is wrong if it matters.
chmod 0700 "$PGDATA" 2>/dev/null || true
chmod 3775 "$sockets" 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then
	find "$PGDATA" "$sockets" ! -user postgres -exec chown postgres {} +
	exec gosu postgres "$me" "$@"
fi

if [ -s "$PGDATA/PG_VERSION" ]; then
	printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
	exec "$@"
fi

if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
	cat >&2 <<'EOM'
Error: the database is not initialized and no superuser password is given.
       Give POSTGRES_PASSWORD a value (with Man8S: machines pull --env-file,
       or a line in the machine's man8env.env), or set
       POSTGRES_HOST_AUTH_METHOD=trust to let anyone log in without a
       password (not recommended).
EOM
	exit 1
fi
if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
	say "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: anyone who reaches the port logs in without a password" >&2
fi
ls /docker-entrypoint-initdb.d/ >/dev/null # fail before initdb if it is unreadable

# The password goes to initdb through a pipe, never through a file or argv;
# initdb refuses an empty line, hence the newline.
# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS holds flags, split on purpose
printf '%s\n' "$POSTGRES_PASSWORD" |
	initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin $POSTGRES_INITDB_ARGS

# TCP logins: the method the server hashes passwords with, unless told.
shift # "postgres"; the rest are the server's flags
auth=${POSTGRES_HOST_AUTH_METHOD:-$(postgres -C password_encryption "$@")}
printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
set -- postgres "$@"

export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start

sql() {
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}
if [ "$POSTGRES_DB" != postgres ]; then
	sql --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
CREATE DATABASE :"db";
EOSQL
fi
for f in /docker-entrypoint-initdb.d/*; do
	[ -e "$f" ] || continue
	case "$f" in
	*.sh)
		if [ -x "$f" ]; then
			say "running $f"
			"$f"
		else
			say "sourcing $f"
			# shellcheck disable=SC1090
			. "$f"
		fi
		;;
	*.sql) say "running $f" && sql --dbname "$POSTGRES_DB" -f "$f" ;;
	*.sql.gz) say "running $f" && gunzip -c "$f" | sql --dbname "$POSTGRES_DB" ;;
	*) say "ignoring $f" ;;
	esac
done

pg_ctl -D "$PGDATA" -m fast -w stop
unset PGPASSWORD
printf '\nPostgreSQL init process complete; ready for start up.\n\n'
exec "$@"
