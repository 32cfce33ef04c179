// Package loopfs gives a test a fresh file system of its own: a sparse
// image in the test's temp dir, formatted and mounted on a loop device,
// unmounted (which frees the loop device) and deleted in t.Cleanup.
package loopfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

// MountT makes a file system of type fstype ("btrfs", "ext4") and size
// bytes, mounts it and returns the mount point. Without root or the
// type's mkfs it skips (fails under CI).
func MountT(t testing.TB, fstype string, size int64) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	MountOnT(t, fstype, size, mnt)
	return mnt
}

// MountOnT is MountT on the dir mnt, made if missing (a path that a
// configuration names already, say).
func MountOnT(t testing.TB, fstype string, size int64, mnt string) {
	t.Helper()
	ci.RequireRoot(t, "a loop-mounted "+fstype)
	mkfs, err := exec.LookPath("mkfs." + fstype)
	if err != nil {
		ci.Skip(t, "mkfs.%s is not installed (Debian: btrfs-progs / e2fsprogs; `make deps`)", fstype)
	}
	image := filepath.Join(t.TempDir(), fstype+".img")
	f, err := os.Create(image)
	if err == nil {
		err = errors.Join(f.Truncate(size), f.Close())
	}
	if err != nil {
		t.Fatalf("creating %s: %v", image, err)
	}
	args := []string{"-q", image}
	if fstype == "ext4" {
		args = []string{"-q", "-F", image}
	}
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.%s %s: %v: %s", fstype, image, err, out)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", image, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting %s on %s: %v: %s", image, mnt, err, out)
	}
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
}
