#!/usr/bin/env bash
# CI's package step (.ci/run, after make test): builds the .deb with
# `make deb`, installs it the way a user does (apt-get install ./mbctl_*.deb),
# runs the installed binaries (mbctl version, a man page, and the e2e test
# TestInstalledPackage: host check --json, a machine pulled from a test
# registry and run, with /usr/bin/mbctl and /usr/lib/man8s/man8s-init), then
# purges the package and checks that none of its files is left. As root, on
# a host without mbctl installed: it installs and removes the real package.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

if [ "$(id -u)" -ne 0 ]; then
	echo "ci-package: run as root: it installs and purges the mbctl package" >&2
	exit 1
fi
if [ "$(dpkg-query -W -f='${Status}' mbctl 2>/dev/null)" = "install ok installed" ]; then
	echo "ci-package: mbctl is installed on this host already; this step would replace and purge it (apt-get purge mbctl first)" >&2
	exit 1
fi
scripts/install-deps.sh

make deb
deb=$(ls -t bin/mbctl_*.deb | head -n 1)
echo "ci-package: $deb, $(du -h "$deb" | cut -f1), installed size $(dpkg-deb -f "$deb" Installed-Size) KiB:"
dpkg-deb -c "$deb"
mapfile -t files < <(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')

purge() {
	if dpkg-query -W mbctl >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq mbctl >/dev/null
	fi
}
trap purge EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null

/usr/bin/mbctl version
for page in "1 mbctl" "1 mbctl-machines-pull" "5 man8env.env" "5 mbctl.toml" "5 man8s.nspawn"; do
	set -- $page
	MANPAGER=cat man "$1" "$2" | grep -q "^NAME" || { echo "ci-package: man $1 $2 does not open" >&2; exit 1; }
done
echo "ci-package: man mbctl, mbctl-machines-pull, man8env.env(5), mbctl.toml(5), man8s.nspawn(5) open"

MBCTL_INSTALLED=/usr/bin/mbctl go test -count=1 -tags installed -run '^TestInstalledPackage$' -v ./test/e2e

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq mbctl >/dev/null
trap - EXIT
left=()
if dpkg-query -W mbctl >/dev/null 2>&1; then
	left+=("dpkg still knows mbctl: $(dpkg-query -W -f='${Status}' mbctl)")
fi
for f in "${files[@]}" /usr/lib/man8s /usr/share/man8s /usr/share/doc/mbctl; do
	if [ -e "$f" ] || [ -L "$f" ]; then
		left+=("$f")
	fi
done
if [ ${#left[@]} -gt 0 ]; then
	printf 'ci-package: left after apt-get purge mbctl: %s\n' "${left[@]}" >&2
	exit 1
fi
echo "ci-package: purged; none of the package's ${#files[@]} files is left"
