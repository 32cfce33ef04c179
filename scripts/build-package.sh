#!/usr/bin/env bash
# Builds mbctl's Debian package (`build-package.sh deb`, for `make deb`) or
# Arch package (`build-package.sh arch`, for `make pkg`) from a copy of the
# working tree in bin/, so the tree itself gets no build products. Both
# packages install what `make install PREFIX=/usr` installs; their version
# comes from git describe (scripts/pkgversion.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: build-package.sh deb|arch}

export VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
export COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
pkgver=$(scripts/pkgversion.sh)
work=bin/package-$kind
rm -rf "$work"
mkdir -p "$work"

# copy SRC DIR: the tracked and the untracked but not ignored files, as
# they are in the working tree (a local build includes local changes).
copy() {
	mkdir -p "$1"
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -x -C "$1"
}

case $kind in
deb)
	for tool in dpkg-buildpackage dpkg-shlibdeps; do
		command -v "$tool" >/dev/null || { echo "build-package: no $tool: apt-get install dpkg-dev" >&2; exit 1; }
	done
	src=$work/mbctl-$pkgver
	copy "$src"
	cat >"$src/debian/changelog" <<CHANGELOG
mbctl ($pkgver) unstable; urgency=medium

  * Built from $VERSION (commit $COMMIT).

 -- Man8S <man8s@users.noreply.github.com>  $(date -R -u -d "@$SOURCE_DATE_EPOCH")
CHANGELOG
	(cd "$src" && dpkg-buildpackage -b -us -uc --no-sign)
	deb=$(ls "$work"/mbctl_"$pkgver"_*.deb)
	mv "$deb" bin/
	rm -rf "$work" # the copy holds a go.mod: no second module left in bin/
	echo "build-package: bin/${deb##*/}"
	;;
arch)
	command -v makepkg >/dev/null || { echo "build-package: no makepkg: the Arch package is built on Arch (pacman -S base-devel)" >&2; exit 1; }
	# The PKGBUILD builds a release from its tag's tarball; here the
	# tarball is this tree, under the name makepkg would download it as
	# (makepkg uses a source it finds in the build dir), so the checksum
	# of the release does not apply.
	sed "s/^pkgver=.*/pkgver=$pkgver/" PKGBUILD >"$work/PKGBUILD"
	copy "$work/mbctl-$pkgver"
	tar -C "$work" -czf "$work/mbctl-$pkgver.tar.gz" "mbctl-$pkgver"
	rm -rf "${work:?}/mbctl-$pkgver"
	(cd "$work" && makepkg --force --skipchecksums --cleanbuild)
	mv "$work"/mbctl-"$pkgver"-*.pkg.tar.* bin/
	rm -rf "$work"
	ls bin/mbctl-"$pkgver"-*.pkg.tar.*
	;;
*)
	echo "build-package: unknown kind $kind (want deb or arch)" >&2
	exit 1
	;;
esac
