#!/bin/sh
# Prints the version of the Debian and Arch packages, made from
# `git describe` (or from the describe string given as $1): the tag without
# its "v", and after a tag the commits since it and the commit, as Arch's
# VCS packages write them, which both dpkg and vercmp order after the tag
# and before the next one:
#   v0.3.0                  -> 0.3.0
#   v0.3.0-12-g1c7a497      -> 0.3.0.r12.g1c7a497
#   1c7a497 (no tag yet)    -> 0.0.0.r<commits>.g1c7a497
# A "-dirty" suffix is dropped: the package version names the commit; the
# binary's own version (mbctl version) still says dirty. A "-" inside a
# tag (v1.2.0-rc1) becomes ".": Arch's pkgver cannot hold one.
set -eu
describe=${1:-$(git describe --tags --long --always --abbrev=7 --match 'v[0-9]*' 2>/dev/null || true)}
describe=${describe%-dirty}
case $describe in
v[0-9]*-[0-9]*-g[0-9a-f]*)
	tag=${describe%-*-g*}
	rest=${describe#"$tag"-}
	n=${rest%%-*}
	hash=${rest#*-}
	tag=$(echo "${tag#v}" | tr - .) # v1.2.0-rc1: pkgver has no "-"
	if [ "$n" = 0 ]; then
		echo "$tag"
	else
		echo "$tag.r$n.$hash"
	fi
	;;
v[0-9]*)
	echo "${describe#v}" | tr - .
	;;
[0-9a-f]*)
	count=${2:-$(git rev-list --count HEAD 2>/dev/null || echo 0)}
	echo "0.0.0.r$count.g$describe"
	;;
*)
	echo "pkgversion: cannot make a package version of '$describe' (want vX.Y.Z[-N-gHASH] or a commit)" >&2
	exit 1
	;;
esac
