// Package btrfs makes, snapshots and deletes btrfs subvolumes through the
// kernel's ioctls.
//
// Why hand-written: the kept Go library (containerd/btrfs) is cgo over
// libbtrfs's headers, which would make mbctl's pure-Go build need a C
// toolchain and btrfs-progs' -dev package; the five ioctls used here are
// stable kernel ABI (include/uapi/linux/btrfs.h) and small enough to state
// directly. Nothing here shells out to btrfs-progs.
package btrfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ioctls of include/uapi/linux/btrfs.h (magic 0x94), numbers computed
// as _IOW/_IOR do: direction<<30 | size<<16 | magic<<8 | nr.
const (
	iocSubvolCreate  = 0x5000940e // _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
	iocSnapDestroy   = 0x5000940f // _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
	iocSnapCreateV2  = 0x50009417 // _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
	iocSubvolGetflag = 0x80089419 // _IOR(0x94, 25, __u64)
	iocSubvolSetflag = 0x4008941a // _IOW(0x94, 26, __u64)

	subvolReadOnly = 1 << 1 // BTRFS_SUBVOL_RDONLY

	// firstFreeObjectID is the inode number of every subvolume's root
	// directory (BTRFS_FIRST_FREE_OBJECTID).
	firstFreeObjectID = 256
)

// volArgs is struct btrfs_ioctl_vol_args: an fd and a name (4096 bytes).
type volArgs struct {
	fd   int64
	name [4088]byte
}

// volArgsV2 is struct btrfs_ioctl_vol_args_v2 (4096 bytes); the qgroup
// union is unused.
type volArgsV2 struct {
	fd      int64
	transid uint64
	flags   uint64
	unused  [4]uint64
	name    [4040]byte
}

// Is reports whether path is on a btrfs file system.
func Is(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("checking the file system of %s: %w", path, err)
	}
	return st.Type == unix.BTRFS_SUPER_MAGIC, nil
}

// IsSubvolume reports whether path is the root of a btrfs subvolume.
func IsSubvolume(path string) (bool, error) {
	ok, err := Is(path)
	if err != nil || !ok {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, fmt.Errorf("checking %s: %w", path, err)
	}
	return st.Ino == firstFreeObjectID && st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// openParent opens the dir of path and returns it with path's base name,
// which must fit the ioctl's name field.
func openParent(path string, max int) (*os.File, string, error) {
	name := filepath.Base(path)
	if len(name) >= max || name == "." || name == "/" {
		return nil, "", fmt.Errorf("subvolume name %q: empty or longer than %d bytes", name, max-1)
	}
	d, err := os.OpenFile(filepath.Dir(path), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", err
	}
	return d, name, nil
}

func ioctl(fd uintptr, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// Create makes an empty subvolume at path (which must not exist).
func Create(path string) error {
	var a volArgs
	d, name, err := openParent(path, len(a.name))
	if err != nil {
		return fmt.Errorf("creating subvolume %s: %w", path, err)
	}
	defer d.Close()
	copy(a.name[:], name)
	if err := ioctl(d.Fd(), iocSubvolCreate, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("creating subvolume %s: %w", path, err)
	}
	return nil
}

// Snapshot makes dst a snapshot of the subvolume src, read-only if asked.
// dst must not exist and must be on the same btrfs file system.
func Snapshot(src, dst string, readOnly bool) error {
	s, err := os.OpenFile(src, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("snapshotting %s: %w", src, err)
	}
	defer s.Close()
	var a volArgsV2
	d, name, err := openParent(dst, len(a.name))
	if err != nil {
		return fmt.Errorf("snapshotting %s to %s: %w", src, dst, err)
	}
	defer d.Close()
	a.fd = int64(s.Fd())
	if readOnly {
		a.flags = subvolReadOnly
	}
	copy(a.name[:], name)
	if err := ioctl(d.Fd(), iocSnapCreateV2, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("snapshotting %s to %s: %w", src, dst, err)
	}
	return nil
}

// flags returns the subvolume flags of path.
func flags(f *os.File) (uint64, error) {
	var v uint64
	err := ioctl(f.Fd(), iocSubvolGetflag, unsafe.Pointer(&v))
	return v, err
}

// SetReadOnly sets or clears the read-only flag of the subvolume at path.
func SetReadOnly(path string, readOnly bool) error {
	f, err := os.OpenFile(path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setting subvolume %s read-only=%t: %w", path, readOnly, err)
	}
	defer f.Close()
	v, err := flags(f)
	if err != nil {
		return fmt.Errorf("reading the flags of subvolume %s: %w", path, err)
	}
	if readOnly {
		v |= subvolReadOnly
	} else {
		v &^= subvolReadOnly
	}
	if err := ioctl(f.Fd(), iocSubvolSetflag, unsafe.Pointer(&v)); err != nil {
		return fmt.Errorf("setting subvolume %s read-only=%t: %w", path, readOnly, err)
	}
	return nil
}

// ReadOnly reports whether the subvolume at path is read-only.
func ReadOnly(path string) (bool, error) {
	f, err := os.OpenFile(path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	v, err := flags(f)
	if err != nil {
		return false, fmt.Errorf("reading the flags of subvolume %s: %w", path, err)
	}
	return v&subvolReadOnly != 0, nil
}

// Delete deletes the subvolume at path with its content, read-only or not
// (subvolumes nested in it must be gone first).
func Delete(path string) error {
	if ro, err := ReadOnly(path); err == nil && ro {
		if err := SetReadOnly(path, false); err != nil {
			return err
		}
	}
	var a volArgs
	d, name, err := openParent(path, len(a.name))
	if err != nil {
		return fmt.Errorf("deleting subvolume %s: %w", path, err)
	}
	defer d.Close()
	copy(a.name[:], name)
	if err := ioctl(d.Fd(), iocSnapDestroy, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("deleting subvolume %s: %w", path, err)
	}
	return nil
}

// RemoveAll removes path like os.RemoveAll, and also where path is a
// subvolume (read-only ones included) or holds subvolumes: those are
// deleted through the ioctl. A missing path is not an error.
func RemoveAll(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Remove(path)
	}
	if sub, _ := IsSubvolume(path); sub {
		if err := removeNested(path); err != nil {
			return err
		}
		return Delete(path)
	}
	if err := os.RemoveAll(path); err == nil {
		return nil
	} else if ok, _ := Is(path); !ok {
		return err
	}
	if err := removeNested(path); err != nil {
		return err
	}
	return os.RemoveAll(path)
}

// removeNested deletes the subvolumes below dir (not dir itself).
func removeNested(dir string) error {
	var subs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir || !d.IsDir() {
			return nil
		}
		if sub, _ := IsSubvolume(p); sub {
			subs = append(subs, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, s := range subs {
		if err := RemoveAll(s); err != nil {
			return err
		}
	}
	return nil
}
