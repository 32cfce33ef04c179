package fsutil

import "golang.org/x/sys/unix"

// OpenInRoot opens unsafePath inside the directory root (a file
// descriptor) as if root were "/": "..", absolute symlinks and absolute
// paths all stay inside it (openat2 RESOLVE_IN_ROOT), /proc magic links
// and mount crossings are refused. flags are open(2) flags; O_CLOEXEC is
// added. The kernel's EAGAIN (a rename elsewhere raced the lookup) is
// retried.
func OpenInRoot(root int, unsafePath string, flags int) (int, error) {
	return openat2(root, unsafePath, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
}

// openat2 is openat2(2) with the kernel's EAGAIN retried a few times.
func openat2(dir int, path string, how *unix.OpenHow) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dir, path, how)
		if err == unix.EAGAIN && i < 16 {
			continue
		}
		return fd, err
	}
}

// OpenChild opens name, a single path component, in the directory dir
// without following a symlink (ELOOP) or crossing a mount point. flags are
// open(2) flags; O_NOFOLLOW and O_CLOEXEC are added.
func OpenChild(dir int, name string, flags int) (int, error) {
	return openat2(dir, name, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
}
