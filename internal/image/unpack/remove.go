package unpack

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil"
)

// whiteout applies a whiteout entry named name in unsafeDir: ".wh.NAME"
// removes NAME as lower layers left it, ".wh..wh..opq" removes everything
// lower layers left in unsafeDir, other ".wh..wh." names are AUFS
// metadata and are ignored. What this layer created itself is kept
// (image-spec: whiteouts apply to lower layers only), whatever the order
// of the entries.
func (u *Unpacker) whiteout(unsafeDir, name string) error {
	target, opaque, meta, ok := parseWhiteout(name)
	if meta {
		return nil // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs, ...): never extracted
	}
	if !ok {
		return fmt.Errorf("invalid whiteout name %q", name)
	}
	u.stats.Whiteouts++
	h, err := u.openDir(unsafeDir, false)
	if err == errNotExist {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	defer h.release()
	if opaque {
		return u.removeLowerChildren(h.fd, unsafeDir, h.exact, 0)
	}
	unsafePath := joinPath(unsafeDir, target)
	if _, upper := u.upper[unsafePath]; !upper {
		u.invalidate(unsafePath, h.exact)
		if err := removeAt(h.fd, target, 0); err != nil {
			return fmt.Errorf("removing %q: %w", shorten(unsafePath), err)
		}
		return nil
	}
	// Made by this layer: keep it, but not what lower layers left inside.
	fd, err := fsutil.OpenChild(h.fd, target, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil // not a directory: nothing of lower layers inside
	}
	defer unix.Close(fd)
	return u.removeLowerChildren(fd, unsafePath, h.exact, 0)
}

// removeLowerChildren removes the entries of the directory fd (at
// unsafeDir) that the current layer did not create, and recurses into the
// directories it did create.
func (u *Unpacker) removeLowerChildren(fd int, unsafeDir string, exact bool, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("directory tree deeper than %d levels", maxTreeDepth)
	}
	names, err := readDirNames(fd)
	if err != nil {
		return fmt.Errorf("reading directory %q: %w", shorten(unsafeDir), err)
	}
	for _, name := range names {
		unsafePath := joinPath(unsafeDir, name)
		if _, upper := u.upper[unsafePath]; !upper {
			u.invalidate(unsafePath, exact)
			if err := removeAt(fd, name, depth+1); err != nil {
				return fmt.Errorf("removing %q: %w", shorten(unsafePath), err)
			}
			continue
		}
		child, err := fsutil.OpenChild(fd, name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			continue // not a directory
		}
		err = u.removeLowerChildren(child, unsafePath, exact, depth+1)
		_ = unix.Close(child)
		if err != nil {
			return err
		}
	}
	return nil
}

// removeAt removes name from the directory dirfd, a directory with all its
// contents. Symbolic links are removed, never followed. A missing name is
// not an error.
func removeAt(dirfd int, name string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	switch err {
	case nil, unix.ENOENT:
		return nil
	case unix.EISDIR:
		return removeDirAt(dirfd, name, depth)
	}
	return err
}

func removeDirAt(dirfd int, name string, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("directory tree deeper than %d levels", maxTreeDepth)
	}
	// openChild does not cross into a mount point: a bind mount in the
	// root is never emptied (EXDEV).
	fd, err := fsutil.OpenChild(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := readDirNames(fd)
	if err == nil {
		for _, child := range names {
			if err = removeAt(fd, child, depth+1); err != nil {
				break
			}
		}
	}
	_ = unix.Close(fd)
	if err != nil {
		return err
	}
	err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// readDirNames lists the directory fd from its start, without "." and "..".
func readDirNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		for b := buf[:n]; len(b) > 0; {
			consumed, _, more := unix.ParseDirent(b, -1, names)
			if consumed == 0 {
				return nil, errors.New("malformed directory entry")
			}
			names = more
			b = b[consumed:]
		}
	}
}

// parseWhiteout reads name, a whiteout entry's base name (".wh." prefix):
// the opaque marker, AUFS metadata (other ".wh..wh." names), or a whiteout
// of target. ok is false for a whiteout of "", "." or "..". whiteout and
// ScanDoomed must read names alike: this is the one place that does.
func parseWhiteout(name string) (target string, opaque, meta, ok bool) {
	switch {
	case name == whiteoutOpaque:
		return "", true, false, true
	case strings.HasPrefix(name, whiteoutMeta):
		return "", false, true, true
	}
	target = strings.TrimPrefix(name, whiteoutPrefix)
	return target, false, false, target != "" && target != "." && target != ".."
}
