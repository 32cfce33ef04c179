package btrfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/loopfs"
)

func TestSubvolumeLifecycle(t *testing.T) {
	mnt := loopfs.MountT(t, "btrfs", 256<<20)
	if ok, err := Is(mnt); err != nil || !ok {
		t.Fatalf("Is(%s) = %v, %v; want true", mnt, ok, err)
	}
	src := filepath.Join(mnt, "src")
	if err := Create(src); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		readOnly bool
	}{{"rw", false}, {"ro", true}} {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(mnt, "snap-"+tt.name)
			if err := Snapshot(src, dst, tt.readOnly); err != nil {
				t.Fatal(err)
			}
			if sub, err := IsSubvolume(dst); err != nil || !sub {
				t.Fatalf("IsSubvolume(%s) = %v, %v", dst, sub, err)
			}
			if b, err := os.ReadFile(filepath.Join(dst, "f")); err != nil || string(b) != "one" {
				t.Fatalf("snapshot content = %q, %v", b, err)
			}
			err := os.WriteFile(filepath.Join(dst, "g"), nil, 0o644)
			if tt.readOnly != errors.Is(err, unix.EROFS) {
				t.Fatalf("writing into the snapshot: %v (read-only %t)", err, tt.readOnly)
			}
			if ro, err := ReadOnly(dst); err != nil || ro != tt.readOnly {
				t.Fatalf("ReadOnly = %v, %v", ro, err)
			}
			// A nested subvolume and a read-only one go with RemoveAll.
			if !tt.readOnly {
				if err := Create(filepath.Join(dst, "nested")); err != nil {
					t.Fatal(err)
				}
			}
			if err := RemoveAll(dst); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s still there: %v", dst, err)
			}
		})
	}
	if sub, _ := IsSubvolume(filepath.Join(mnt)); !sub {
		t.Error("the file system's top is a subvolume too")
	}
	plain := filepath.Join(src, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	if sub, _ := IsSubvolume(plain); sub {
		t.Error("a plain dir counted as a subvolume")
	}
	if err := RemoveAll(filepath.Join(mnt, "missing")); err != nil {
		t.Errorf("RemoveAll of a missing path: %v", err)
	}
}
