#!/usr/bin/env bash
# Installs the Debian packages mbctl's build, tests and demo need, if any is
# missing; `install-deps.sh bench` adds what the pull benchmark compares
# against. Package maintainer scripts are kept from starting services
# (yggdrasil, docker-registry): the tests run their own, in namespaces.
set -euo pipefail

packages=(
	systemd            # systemd-networkd, run by the testbed inside namespaces
	dbus-daemon        # a testbed host's private system bus: networkctl reload reaches its networkd
	systemd-container  # systemd-nspawn
	yggdrasil          # the overlay network, run by the testbed
	docker-registry    # the real distribution registry, the testbed's image source
	skopeo umoci       # reference pull pipeline the e2e tests compare against
	busybox-static     # static shell for test images and machines without one
	tini               # tini-static: an image-provided init in the e2e tests
	# The e2e corpus (internal/testbed/corpus): replicas of official images
	# built from these packages' files, and the real clients that talk to them.
	postgresql         # postgres, initdb, pg_ctl; psql
	nginx              # nginx (and nginx-common's mime.types)
	redis-server       # redis-server; redis-tools brings redis-cli
	gosu               # the entrypoints' step-down from root
	gettext-base       # envsubst, for nginx's templates
	curl               # HTTP checks from the testbed host
	apache2-utils      # htpasswd, for the authenticated test registry
	iproute2 util-linux # ip; nsenter, unshare
	btrfs-progs        # mkfs.btrfs: the loop-mounted btrfs of the snapshot tests
	ca-certificates make git
	gcc libc6-dev libisal-dev # ISA-L, mbctl's fast gzip engine (cgo)
	dpkg-dev man-db    # make deb (dpkg-buildpackage, dpkg-shlibdeps); the manual pages' tests and man
)
if [ "${1:-}" = bench ]; then
	packages+=(
		podman            # case (e) of the benchmark
		debootstrap       # builds the benchmark's Debian layer (once)
		e2fsprogs mount   # a fresh ext4 file system for the measurements
		procps            # sysctl, used by the startup benchmark
		haproxy           # the forwarder benchmark's reference proxy (splicing, TCP mode)
	)
fi

missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	own_policy=1
fi
trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
