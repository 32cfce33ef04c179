package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CopyStats counts what CopyTree copied.
type CopyStats struct {
	Dirs      int
	Files     int
	Bytes     int64
	Symlinks  int
	Hardlinks int // entries created as a hard link to an already copied file
	Special   int // FIFOs and device nodes
	Skipped   int // sockets, which are meaningless in a copy
}

// Add adds o to s.
func (s *CopyStats) Add(o CopyStats) {
	s.Dirs += o.Dirs
	s.Files += o.Files
	s.Bytes += o.Bytes
	s.Symlinks += o.Symlinks
	s.Hardlinks += o.Hardlinks
	s.Special += o.Special
	s.Skipped += o.Skipped
}

// CopyTree copies the content of directory src into the existing directory
// dst. It preserves owners, modes (setuid, setgid, sticky), symlinks (targets
// verbatim), hard links (as hard links within the copy), FIFOs and device
// nodes, modification times and xattrs (xattrs the target file system
// refuses are dropped). Sockets are skipped. dst itself keeps its owner and
// mode (see CopyMeta).
//
// Entries already in dst are replaced, except directories, which are merged
// and keep their own owner and mode. Symlinks are never followed: an entry in
// the way that is a symlink is replaced, never written through. Failures of
// single entries are collected and returned together; the copy goes on.
func CopyTree(src, dst string) (CopyStats, error) {
	r := copier{src: src, dst: dst, links: map[[2]uint64]string{}}
	r.run()
	return r.stats, errors.Join(r.errs...)
}

// CopyMeta gives dst the owner, mode, xattrs and times of src without
// following symlinks at either end.
func CopyMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("lstat %s: %w", src, err)
	}
	return setMeta(src, dst, &st, st.Mode&unix.S_IFMT == unix.S_IFLNK)
}

// copier holds the state of one directory copy.
type copier struct {
	src, dst string
	links    map[[2]uint64]string // (dev, inode) of multiply linked files → first copy
	dirs     []dirMeta            // directories to finish once their content is in place
	stats    CopyStats
	errs     []error
}

type dirMeta struct {
	path    string
	srcPath string
	st      unix.Stat_t
}

func (r *copier) run() {
	err := filepath.WalkDir(r.src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			r.errs = append(r.errs, err)
			if d != nil && d.IsDir() && path != r.src {
				return filepath.SkipDir
			}
			return nil
		}
		if path == r.src {
			return nil // the target directory itself keeps its owner and mode
		}
		rel, err := filepath.Rel(r.src, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			r.errs = append(r.errs, fmt.Errorf("%s: outside %s", path, r.src))
			return nil
		}
		// WalkDir goes top-down and does not follow symlinks: every parent of target was
		// created (or found to be a real directory) by an earlier call.
		target := filepath.Join(r.dst, rel)
		if err := r.copyEntry(path, target); err != nil {
			r.errs = append(r.errs, fmt.Errorf("/%s: %w", rel, err))
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		r.errs = append(r.errs, err)
	}
	// Directory modes and times last, deepest first: creating entries changes the mtime,
	// and a read-only directory would refuse its content.
	for i := len(r.dirs) - 1; i >= 0; i-- {
		d := r.dirs[i]
		if err := setMeta(d.srcPath, d.path, &d.st, false); err != nil {
			r.errs = append(r.errs, err)
		}
	}
}

func (r *copier) copyEntry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("lstat: %w", err)
	}
	typ := st.Mode & unix.S_IFMT

	var existing unix.Stat_t
	exists := false
	if err := unix.Lstat(dst, &existing); err == nil {
		exists = true
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lstat %s: %w", dst, err)
	}
	if exists {
		isDir := existing.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case isDir && typ == unix.S_IFDIR:
			// Merge into the existing directory, which keeps its metadata.
			r.stats.Dirs++
			return nil
		case isDir:
			return fmt.Errorf("%s exists as a directory", dst)
		default:
			if err := os.Remove(dst); err != nil {
				return fmt.Errorf("replacing %s: %w", dst, err)
			}
		}
	}

	switch typ {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		r.dirs = append(r.dirs, dirMeta{path: dst, srcPath: src, st: st})
		r.stats.Dirs++
		return nil
	case unix.S_IFREG:
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if st.Nlink > 1 {
			if first, ok := r.links[key]; ok {
				if err := os.Link(first, dst); err != nil {
					return fmt.Errorf("linking to %s: %w", first, err)
				}
				r.stats.Hardlinks++
				return nil
			}
		}
		if err := r.copyFile(src, dst, &st); err != nil {
			return err
		}
		if st.Nlink > 1 {
			r.links[key] = dst
		}
		return nil
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		r.stats.Symlinks++
		return setMeta(src, dst, &st, true)
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknod(dst, st.Mode&(unix.S_IFMT|0o777), int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		r.stats.Special++
		return setMeta(src, dst, &st, false)
	default: // sockets
		r.stats.Skipped++
		return nil
	}
}

func (r *copier) copyFile(src, dst string, st *unix.Stat_t) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying: %w", err)
	}
	r.stats.Files++
	r.stats.Bytes += n
	return setMeta(src, dst, st, false)
}

// setMeta gives dst the owner, mode, xattrs and times of src (stat st). Ownership comes
// first because chown clears setuid bits and file capabilities. Nothing follows symlinks;
// for a symlink (link true) the mode is not set.
func setMeta(src, dst string, st *unix.Stat_t, link bool) error {
	var errs []error
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		errs = append(errs, fmt.Errorf("chown %s: %w", dst, err))
	}
	if !link {
		// dst was just created by us and is not a symlink, so chmod cannot follow one.
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			errs = append(errs, fmt.Errorf("chmod %s: %w", dst, err))
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		errs = append(errs, err)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		errs = append(errs, fmt.Errorf("setting times of %s: %w", dst, err))
	}
	return errors.Join(errs...)
}

// copyXattrs copies the extended attributes of src to dst without following symlinks.
// Attributes the target file system does not support or refuses are dropped.
func copyXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		if err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("listing xattrs of %s: %w", src, err)
		}
		return nil
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(src, buf); err != nil {
		return fmt.Errorf("listing xattrs of %s: %w", src, err)
	}
	var errs []error
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading xattr %s of %s: %w", name, src, err))
			continue
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(src, name, val); err != nil {
			errs = append(errs, fmt.Errorf("reading xattr %s of %s: %w", name, src, err))
			continue
		}
		err = unix.Lsetxattr(dst, name, val[:vsize], 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			continue // e.g. user.* on a symlink or on an older tmpfs
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setting xattr %s of %s: %w", name, dst, err))
		}
	}
	return errors.Join(errs...)
}
