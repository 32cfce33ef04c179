package fsutil

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// FdPath returns the path the kernel has for the open file fd (the target
// of /proc/self/fd/N): absolute, with every symbolic link resolved.
func FdPath(fd int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// RealPathInRoot opens unsafePath inside the directory root with
// OpenInRoot (flags are open(2) flags) and returns where the file really
// is, as an absolute path inside root ("/" for root itself), symbolic
// links resolved. rootPath is the kernel's path of root, from FdPath(root):
// the file's kernel path is compared with it, not with the path root was
// opened by, which may go through symbolic links (a rootfs on another disk
// reached through a link). An open error is returned as it is (ENOENT ...).
func RealPathInRoot(root int, rootPath, unsafePath string, flags int) (string, error) {
	fd, err := OpenInRoot(root, unsafePath, flags)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	p, err := FdPath(fd)
	if err != nil {
		return "", err
	}
	if p == rootPath {
		return "/", nil
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(rootPath, "/")+"/")
	if !ok {
		return "", fmt.Errorf("%s resolves to %s, outside %s", unsafePath, p, rootPath)
	}
	return "/" + rel, nil
}
