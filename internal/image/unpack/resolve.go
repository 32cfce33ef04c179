package unpack

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil"
)

// errNotExist reports that a directory to look in does not exist (or a
// component on the way is not a directory).
var errNotExist = errors.New("directory does not exist")

// cleanPath turns a tar entry name into a path relative to the root: no
// leading or trailing slash, no "." or ".." component, ".." stopping at the
// root (as if the root were "/"). The root itself is "". Names that are
// clean already are returned without allocating.
func cleanPath(unsafeName string) string {
	p := unsafeName
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	for strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	if isClean(p) {
		return p
	}
	return strings.TrimPrefix(path.Clean("/"+unsafeName), "/")
}

// isClean reports whether p is "" or a relative path whose components are
// all non-empty and neither "." nor "..".
func isClean(p string) bool {
	if p == "" {
		return true
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		switch p[start:i] {
		case "", ".", "..":
			return false
		}
		start = i + 1
	}
	return true
}

// splitPath splits a clean path into its parent directory and its final
// component.
func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// joinPath joins a clean directory path and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// isWithin reports whether the clean path p is dir or below it.
func isWithin(p, dir string) bool {
	if dir == "" {
		return true
	}
	return p == dir || len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}

// cachedDir is an open directory whose real location below the root is
// path: it was reached from the root one component at a time without
// crossing a symbolic link.
type cachedDir struct {
	path string
	fd   int
}

// dirHandle is a directory resolved inside the root.
type dirHandle struct {
	fd int
	// owned: fd belongs to this handle and release closes it; otherwise it
	// is the root or in u.dirs.
	owned bool
	// exact: the directory is at the path that was asked for (no symbolic
	// link was crossed), so u.dirs can be invalidated by path.
	exact bool
	// cached: fd is the root with u.dirs empty or the last of u.dirs, so a
	// child directory can be appended to the chain.
	cached bool
}

func (h dirHandle) release() {
	if h.owned {
		_ = unix.Close(h.fd)
	}
}

// openDir resolves unsafeDir, a clean path, to a directory inside the root.
// With create, missing directories are created (0755, owned by the
// unpacking user); without, a missing directory is errNotExist.
//
// The common case, a path of real directories, is walked one component at
// a time from the deepest directory of u.dirs that is an ancestor, with
// openChild (no symbolic link, no mount point), and the directories opened
// are appended to u.dirs, which afterwards is exactly the chain from the
// root to unsafeDir. Tar streams list a directory's entries together, so most
// entries find their parent open already. If a component is a symbolic
// link (or not a directory), the whole path is resolved again from the
// root by the kernel (openat2 RESOLVE_IN_ROOT; mkdirInRoot where something
// must be created), and nothing of it is cached.
func (u *Unpacker) openDir(unsafeDir string, create bool) (dirHandle, error) {
	n := len(u.dirs)
	for n > 0 && !isWithin(unsafeDir, u.dirs[n-1].path) {
		n--
	}
	u.dropDirs(n)
	h := dirHandle{fd: u.rootFd, exact: true, cached: true}
	rest := unsafeDir
	if n > 0 {
		top := u.dirs[n-1]
		h.fd = top.fd
		if len(top.path) == len(unsafeDir) {
			return h, nil
		}
		rest = unsafeDir[len(top.path)+1:]
	}
	for rest != "" {
		name, after, _ := strings.Cut(rest, "/")
		prefix := unsafeDir[:len(unsafeDir)-len(rest)+len(name)]
		fd, err := u.openChildDir(h.fd, name, create)
		if err != nil {
			h.release()
			switch {
			case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR):
				return u.openDirInRoot(unsafeDir, create)
			case errors.Is(err, unix.ENOENT):
				return dirHandle{}, errNotExist
			}
			return dirHandle{}, fmt.Errorf("opening directory %q: %w", prefix, err)
		}
		if h.cached && len(u.dirs) < maxCachedDirs {
			u.dirs = append(u.dirs, cachedDir{path: prefix, fd: fd})
			h = dirHandle{fd: fd, exact: true, cached: true}
		} else {
			h.release()
			h = dirHandle{fd: fd, owned: true, exact: true}
		}
		rest = after
	}
	return h, nil
}

// openChildDir opens the directory name in parent without following a
// symbolic link, creating it (0755, owned by the unpacking user) if create
// is set and it is missing.
func (u *Unpacker) openChildDir(parent int, name string, create bool) (int, error) {
	fd, err := fsutil.OpenChild(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != unix.ENOENT || !create {
		return fd, err
	}
	created := true
	if err := unix.Mkdirat(parent, name, 0o755); err == unix.EEXIST {
		created = false
	} else if err != nil {
		return -1, err
	}
	fd, err = fsutil.OpenChild(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil || !created {
		return fd, err
	}
	// A setgid parent would pass on its group and bit, and the umask may
	// have taken bits away.
	if err := unix.Fchown(fd, u.uid, u.gid); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	if err := unix.Fchmod(fd, 0o755); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openDirInRoot resolves unsafeDir from the root by the kernel's rules for
// a chroot (openat2 RESOLVE_IN_ROOT). If create is set and something on
// the way is missing, mkdirInRoot creates it.
func (u *Unpacker) openDirInRoot(unsafeDir string, create bool) (dirHandle, error) {
	fd, err := fsutil.OpenInRoot(u.rootFd, unsafeDir, unix.O_RDONLY|unix.O_DIRECTORY)
	if create && errors.Is(err, unix.ENOENT) {
		fd, err = u.mkdirInRoot(unsafeDir)
	}
	switch {
	case !create && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)):
		return dirHandle{}, errNotExist
	case err != nil:
		return dirHandle{}, fmt.Errorf("resolving directory %q in root: %w", shorten(unsafeDir), err)
	}
	return dirHandle{fd: fd, owned: true}, nil
}

// mkdirInRoot resolves unsafeDir inside the root as openInRoot does, and
// creates the directories that are missing, also where a symbolic link
// points to a missing path (as mkdir -p in a chroot would). Every step is
// one component, opened with O_NOFOLLOW relative to a directory inside the
// root; a symbolic link is read and its target walked the same way, an
// absolute one from the root; ".." never goes above the root.
func (u *Unpacker) mkdirInRoot(unsafeDir string) (_ int, err error) {
	const maxLinks = 40 // Linux's MAXSYMLINKS
	cur, err := unix.Openat(u.rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer func() {
		if err != nil {
			_ = unix.Close(cur)
		}
	}()
	depth, links, steps := 0, 0, 0
	linkBuf := make([]byte, maxPathLen)
	for rest := unsafeDir; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, "/")
		if steps++; steps > maxPathLen {
			return -1, fmt.Errorf("more than %d path components: %w", maxPathLen, unix.ENAMETOOLONG)
		}
		switch name {
		case "", ".":
			continue
		case "..":
			if depth == 0 {
				continue // ".." of the root is the root
			}
			parent, err := unix.Openat(cur, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return -1, err
			}
			_ = unix.Close(cur)
			cur, depth = parent, depth-1
			continue
		}
		next, err := u.openChildDir(cur, name, true)
		if err == nil {
			_ = unix.Close(cur)
			cur, depth = next, depth+1
			continue
		}
		if err != unix.ELOOP && err != unix.ENOTDIR {
			return -1, err
		}
		n, lerr := unix.Readlinkat(cur, name, linkBuf)
		if lerr != nil {
			return -1, fmt.Errorf("%q: %w", name, unix.ENOTDIR) // not a symbolic link
		}
		if links++; links > maxLinks {
			return -1, unix.ELOOP
		}
		target := string(linkBuf[:n])
		if strings.HasPrefix(target, "/") {
			root, err := unix.Openat(u.rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return -1, err
			}
			_ = unix.Close(cur)
			cur, depth = root, 0
		}
		rest = target + "/" + rest
	}
	return cur, nil
}

// dropDirs closes the cached directories from index n on.
func (u *Unpacker) dropDirs(n int) {
	for i := n; i < len(u.dirs); i++ {
		_ = unix.Close(u.dirs[i].fd)
	}
	clear(u.dirs[n:])
	u.dirs = u.dirs[:n]
}

// invalidate drops the cached directories at or below unsafePath, which is
// about to be removed or replaced. If the path was reached through a
// symbolic link (not exact), its real location is unknown and the whole
// cache goes.
func (u *Unpacker) invalidate(unsafePath string, exact bool) {
	if !exact {
		u.dropDirs(0)
		return
	}
	for i, d := range u.dirs {
		if isWithin(d.path, unsafePath) {
			u.dropDirs(i)
			return
		}
	}
}
