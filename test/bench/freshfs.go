package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// freshFS is an empty ext4 file system on a loop device that the cases write
// into. A file system that has just deleted thousands of files allocates new
// inodes slowly for minutes (ext4 skips inodes freed within the last 60 to
// 300 s, scanning past each of them: recently_deleted in fs/ext4/ialloc.c),
// so on a long-lived machine the figures would depend on what ran before.
// A fresh file system per run makes them repeatable, for every tool alike.
type freshFS struct {
	image, mnt string
}

// newFreshFS creates a sparse image of size bytes in dir, formats it with
// every inode table written up front (no lazy init running in the
// background during the measurements) and mounts it.
func newFreshFS(ctx context.Context, dir string, size int64, fstype string) (*freshFS, error) {
	if fstype == "" {
		fstype = "ext4"
	}
	fs := &freshFS{image: filepath.Join(dir, "fresh-"+fstype+".img"), mnt: filepath.Join(dir, "fresh")}
	f, err := os.Create(fs.image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("creating %s: %w", fs.image, err), os.Remove(fs.image))
	}
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", fs.image)
	if fstype == "btrfs" {
		mkfs = exec.CommandContext(ctx, "mkfs.btrfs", "-q", fs.image)
	}
	if out, err := mkfs.CombinedOutput(); err != nil {
		return nil, errors.Join(fmt.Errorf("mkfs.%s %s: %w: %s", fstype, fs.image, err, out), os.Remove(fs.image))
	}
	if err := os.Mkdir(fs.mnt, 0o755); err != nil {
		return nil, errors.Join(err, os.Remove(fs.image))
	}
	if out, err := exec.CommandContext(ctx, "mount", "-o", "loop", fs.image, fs.mnt).CombinedOutput(); err != nil {
		return nil, errors.Join(fmt.Errorf("mounting %s: %w: %s", fs.image, err, out), os.Remove(fs.mnt), os.Remove(fs.image))
	}
	return fs, nil
}

// close unmounts the file system (the loop device goes with it) and
// deletes the image: one file, so nothing is left for the next run to trip on.
func (fs *freshFS) close() error {
	err := unix.Unmount(fs.mnt, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", fs.mnt, err)
	}
	var errs []error
	for _, p := range []string{fs.mnt, fs.image} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
