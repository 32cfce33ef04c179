// Package protect keeps an image's /run and /tmp content across the tmpfs mounts that
// systemd-nspawn puts over both: mbctl moves the content aside at pull time (Protect) and
// man8s-init copies it back inside the running machine (Restore).
package protect

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Suffix is appended to the name of a protected directory: /run → /run.man8sprotected.
const Suffix = ".man8sprotected"

type protected struct {
	name string      // relative to the root
	mode fs.FileMode // of the empty directory Protect recreates
}

// dirs returns the protected directories.
func dirs() [2]protected {
	return [2]protected{{"run", 0o755}, {"tmp", 0o777 | fs.ModeSticky}}
}

// Result says what Protect did with each directory.
type Result struct {
	// Moved lists the directories whose content was moved aside ("/run", "/tmp").
	Moved []string
	// Skipped maps a directory left alone to the reason (absent, empty, a symlink, ...).
	Skipped map[string]string
}

// Protect moves rootfs/run to rootfs/run.man8sprotected and rootfs/tmp to
// rootfs/tmp.man8sprotected when they have content, and recreates them empty: /run with
// mode 0755, /tmp with mode 1777, each with the owner of the original. A /run or /tmp that
// is absent, empty, a symlink (e.g. /run → /var/run) or not a directory is left alone and
// reported in Result.Skipped. It is used by mbctl on the staging rootfs, which nothing else
// is using; on failure the directory being handled is put back.
func Protect(rootfs string) (Result, error) {
	res := Result{Skipped: map[string]string{}}
	for _, d := range dirs() {
		name := "/" + d.name
		reason, err := protectOne(filepath.Join(rootfs, d.name), d.mode)
		if err != nil {
			return res, fmt.Errorf("protecting %s of %s: %w", name, rootfs, err)
		}
		if reason != "" {
			res.Skipped[name] = reason
			continue
		}
		res.Moved = append(res.Moved, name)
	}
	return res, nil
}

// protectOne moves dir aside; a non-empty reason means it was left alone.
func protectOne(dir string, mode fs.FileMode) (reason string, err error) {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "absent", nil
	case err != nil:
		return "", err
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(dir)
		return fmt.Sprintf("a symlink to %s", target), nil
	case !fi.IsDir():
		return "not a directory", nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	if len(entries) == 0 {
		return "empty", nil
	}
	aside := dir + Suffix
	if _, err := os.Lstat(aside); err == nil {
		return "", fmt.Errorf("%s already exists", aside)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Rename(dir, aside); err != nil {
		return "", err
	}
	if err := recreate(dir, mode, int(st.Uid), int(st.Gid)); err != nil {
		if rerr := os.Rename(aside, dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("putting %s back: %w", dir, rerr))
		}
		return "", err
	}
	return "", nil
}

func recreate(dir string, mode fs.FileMode, uid, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	err := errors.Join(os.Lchown(dir, uid, gid), os.Chmod(dir, mode))
	if err != nil {
		return errors.Join(err, os.Remove(dir))
	}
	return nil
}
