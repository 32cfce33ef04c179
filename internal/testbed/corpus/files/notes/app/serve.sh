#!/bin/sh
# notes: a small web app, busybox httpd with one CGI program, that keeps
# what it is told in /data/notes. It listens on the address given as $1
# ([::]:8080, both IPv6 and IPv4, unless told otherwise) and stops cleanly
# on SIGTERM, saying so.
listen=${1:-[::]:8080}

httpd -f -p "$listen" -h /srv/www &
pid=$!
stop() {
	echo "notes: SIGTERM: stopping httpd"
	kill -TERM "$pid" 2>/dev/null
	wait "$pid"
	echo "notes: stopped cleanly"
	exit 0
}
trap stop TERM
echo "notes: serving /srv/www on $listen as uid $(id -u) (httpd is PID $pid)"
wait "$pid"
status=$?
echo "notes: httpd exited with status $status"
exit "$status"
