package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil"
)

// Every entry is made in the same order: create, chown, extended
// attributes, chmod (chown clears the setuid and setgid bits, and writing
// or chown clears security.capability), then the times. Directories get
// their times at the end of the layer, once their contents are in place.

// regular creates a regular file and copies its contents from r.
func (u *Unpacker) regular(ctx context.Context, hdr *tar.Header, unsafePath, unsafeDir, name string, r io.Reader) error {
	meta, err := headerMeta(hdr)
	if err != nil {
		return err
	}
	h, err := u.openParent(unsafeDir)
	if err != nil {
		return err
	}
	defer h.release()
	if u.skip(h, unsafePath, hdr.Typeflag) {
		return nil // the next layer deletes it; tar skips the contents
	}
	// O_EXCL: a new inode every time, so that a hard link to what was
	// here before keeps the old contents, and never a write through a
	// symbolic link.
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fast := u.bornExact(h, unsafeDir, hdr, meta)
	createMode := uint32(0o600)
	if fast {
		createMode = meta.mode
	}
	var fd int
	err = u.createReplacing(h, unsafePath, name, func() (err error) {
		fd, err = unix.Openat(h.fd, name, flags, createMode)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	n, err := u.copyData(ctx, fd, r)
	if err == nil && !fast {
		err = u.setMetaFd(fd, hdr, meta)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("closing file: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := setTimes(h.fd, name, meta.ts); err != nil {
		return err
	}
	u.stats.Files++
	u.stats.Bytes += n
	u.markUpper(unsafePath)
	return nil
}

// bornExact reports whether an entry created in h (at unsafeDir) with the
// mode meta.mode has the owner and mode the layer says without fchown and
// fchmod: most files and directories are created by root:root (and not in
// a setgid directory) with a mode the umask does not touch.
func (u *Unpacker) bornExact(h dirHandle, unsafeDir string, hdr *tar.Header, m meta) bool {
	if !u.fastMeta || !h.exact || hdr.Uid != u.uid || hdr.Gid != u.gid ||
		m.mode&^0o777 != 0 || m.mode&u.umask != 0 {
		return false
	}
	if _, sgidParent := u.sgid[unsafeDir]; sgidParent {
		return false
	}
	return !hasXattrs(hdr)
}

// copyData copies r to the file fd through the Unpacker's buffer.
func (u *Unpacker) copyData(ctx context.Context, fd int, r io.Reader) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, eof, err := fill(r, u.buf)
		if n > 0 {
			if err := writeAll(fd, u.buf[:n]); err != nil {
				return total, fmt.Errorf("writing file: %w", err)
			}
			total += int64(n)
		}
		if err != nil {
			return total, fmt.Errorf("reading file contents: %w", err)
		}
		if eof {
			return total, nil
		}
	}
}

// fill reads from r until buf is full or r is at its end (eof).
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// directory creates a directory, or updates the attributes of the one that
// is there, keeping its contents.
func (u *Unpacker) directory(hdr *tar.Header, unsafePath, unsafeDir, name string) error {
	meta, err := headerMeta(hdr)
	if err != nil {
		return err
	}
	h, err := u.openParent(unsafeDir)
	if err != nil {
		return err
	}
	defer h.release()
	// A new directory that is born as the layer says (see bornExact) is
	// made with its final mode and needs no fchown and fchmod.
	fast := u.bornExact(h, unsafeDir, hdr, meta)
	mkMode := uint32(0o700)
	if fast {
		mkMode = meta.mode
	}
	err = unix.Mkdirat(h.fd, name, mkMode)
	if err == unix.EEXIST {
		fast = false // an existing directory: only its attributes change
		var st unix.Stat_t
		if err := unix.Fstatat(h.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("inspecting existing entry: %w", err)
		}
		err = nil
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := u.replace(h, unsafePath, name); err != nil {
				return err
			}
			err = unix.Mkdirat(h.fd, name, 0o700)
		}
	}
	if err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}
	fd, err := fsutil.OpenChild(h.fd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("opening directory: %w", err)
	}
	if !fast {
		if err := u.setMetaFd(fd, hdr, meta); err != nil {
			_ = unix.Close(fd)
			return err
		}
	}
	u.noteDirMode(unsafePath, h.exact, meta.mode)
	// The layer's next entries are most likely inside this directory.
	if h.cached && len(u.dirs) < maxCachedDirs {
		u.dirs = append(u.dirs, cachedDir{path: unsafePath, fd: fd})
	} else {
		_ = unix.Close(fd)
	}
	u.dirTimes = append(u.dirTimes, dirTime{unsafePath: unsafePath, ts: meta.ts})
	u.stats.Dirs++
	u.markUpper(unsafePath)
	return nil
}

// rootEntry applies a layer's entry for the root directory itself: its
// attributes only. Any other type would replace the root and is refused.
func (u *Unpacker) rootEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("refusing to replace the root directory with a %s", typeName(hdr.Typeflag))
	}
	meta, err := headerMeta(hdr)
	if err != nil {
		return err
	}
	if err := u.setMetaFd(u.rootFd, hdr, meta); err != nil {
		return err
	}
	u.noteDirMode("", true, meta.mode)
	u.dirTimes = append(u.dirTimes, dirTime{unsafePath: "", ts: meta.ts})
	u.stats.Dirs++
	return nil
}

// symlink creates a symbolic link. Its target is stored as it is: it is
// never followed here.
func (u *Unpacker) symlink(hdr *tar.Header, unsafePath, unsafeDir, name string) error {
	if hdr.Linkname == "" {
		return errors.New("symbolic link with an empty target")
	}
	meta, err := headerMeta(hdr)
	if err != nil {
		return err
	}
	h, err := u.openParent(unsafeDir)
	if err != nil {
		return err
	}
	defer h.release()
	err = u.createReplacing(h, unsafePath, name, func() error {
		return unix.Symlinkat(hdr.Linkname, h.fd, name)
	})
	if err != nil {
		return fmt.Errorf("creating symbolic link: %w", err)
	}
	if err := u.setMetaAt(h.fd, name, hdr, meta, true); err != nil {
		return err
	}
	u.stats.Symlinks++
	u.markUpper(unsafePath)
	return nil
}

// createReplacing runs mk, which creates name in h; if something is in the
// way (EEXIST) it is replaced and mk runs once more.
func (u *Unpacker) createReplacing(h dirHandle, unsafePath, name string, mk func() error) error {
	err := mk()
	if err == unix.EEXIST {
		if err := u.replace(h, unsafePath, name); err != nil {
			return err
		}
		err = mk()
	}
	return err
}

// device creates a character or block device or a FIFO.
func (u *Unpacker) device(hdr *tar.Header, unsafePath, unsafeDir, name string) error {
	meta, err := headerMeta(hdr)
	if err != nil {
		return err
	}
	var typ uint32
	var dev uint64
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		typ = unix.S_IFCHR
		if hdr.Typeflag == tar.TypeBlock {
			typ = unix.S_IFBLK
		}
		if hdr.Devmajor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor < 0 || hdr.Devminor > 0xfffff {
			return fmt.Errorf("invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
		}
		dev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	default:
		typ = unix.S_IFIFO
	}
	h, err := u.openParent(unsafeDir)
	if err != nil {
		return err
	}
	defer h.release()
	if u.skip(h, unsafePath, hdr.Typeflag) {
		return nil // the next layer deletes it
	}
	err = u.createReplacing(h, unsafePath, name, func() error {
		return unix.Mknodat(h.fd, name, typ|0o600, int(dev))
	})
	if err != nil {
		return fmt.Errorf("creating device node: %w", err)
	}
	if err := u.setMetaAt(h.fd, name, hdr, meta, false); err != nil {
		return err
	}
	u.stats.Devices++
	u.markUpper(unsafePath)
	return nil
}

// hardlink links unsafePath to an existing non-directory inside the root,
// from this layer or a lower one. The target's directory is resolved
// inside the root; its final component is not followed, so a link to a
// symbolic link is a second name for that symbolic link.
func (u *Unpacker) hardlink(hdr *tar.Header, unsafePath, unsafeDir, name string) error {
	if len(hdr.Linkname) > maxPathLen {
		return fmt.Errorf("hard link target is longer than %d bytes", maxPathLen)
	}
	unsafeTarget := cleanPath(hdr.Linkname)
	if unsafeTarget == "" {
		return fmt.Errorf("hard link to %q: the root directory", hdr.Linkname)
	}
	if _, skipped := u.skipped[unsafeTarget]; skipped {
		// The target was not created, the next layer deletes it: so
		// may this link be, but a link elsewhere would keep it alive.
		h, err := u.openParent(unsafeDir)
		if err != nil {
			return err
		}
		defer h.release()
		if u.skip(h, unsafePath, hdr.Typeflag) {
			return nil
		}
		return fmt.Errorf("hard link to %q: %w", shorten(hdr.Linkname), ErrSkippedLinkTarget)
	}
	targetDir, targetName := splitPath(unsafeTarget)
	src := u.rootFd
	if targetDir != "" {
		fd, err := fsutil.OpenInRoot(u.rootFd, targetDir, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("hard link target %q does not exist", shorten(hdr.Linkname))
		}
		if err != nil {
			return fmt.Errorf("resolving hard link target %q: %w", shorten(hdr.Linkname), err)
		}
		defer unix.Close(fd)
		src = fd
	}
	var st unix.Stat_t
	if err := unix.Fstatat(src, targetName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("hard link target %q does not exist", shorten(hdr.Linkname))
		}
		return fmt.Errorf("inspecting hard link target %q: %w", shorten(hdr.Linkname), err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %q is a directory", shorten(hdr.Linkname))
	}
	h, err := u.openParent(unsafeDir)
	if err != nil {
		return err
	}
	defer h.release()
	err = unix.Linkat(src, targetName, h.fd, name, 0)
	if err == unix.EEXIST {
		var cur unix.Stat_t
		if unix.Fstatat(h.fd, name, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
			err = nil // linked already (a duplicate entry, or a link to itself)
		} else {
			if err := u.replace(h, unsafePath, name); err != nil {
				return err
			}
			err = unix.Linkat(src, targetName, h.fd, name, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("creating hard link to %q: %w", shorten(hdr.Linkname), err)
	}
	// A hard link has no metadata of its own: the target's applies.
	u.stats.Hardlinks++
	u.markUpper(unsafePath)
	return nil
}

// openParent resolves and, as needed, creates an entry's parent directory.
func (u *Unpacker) openParent(unsafeDir string) (dirHandle, error) {
	h, err := u.openDir(unsafeDir, true)
	if err == errNotExist {
		// Only if a directory vanished between creation and opening.
		return h, fmt.Errorf("parent directory %q: %w", shorten(unsafeDir), unix.ENOENT)
	}
	return h, err
}

// replace removes whatever is at name in h (for an entry of another type,
// or a duplicate), a directory with its contents.
func (u *Unpacker) replace(h dirHandle, unsafePath, name string) error {
	u.invalidate(unsafePath, h.exact)
	if err := removeAt(h.fd, name, 0); err != nil {
		return fmt.Errorf("removing what was there: %w", err)
	}
	return nil
}

// meta is the metadata of a header, checked.
type meta struct {
	mode uint32
	ts   [2]unix.Timespec // access, modification
}

func headerMeta(hdr *tar.Header) (meta, error) {
	if hdr.Uid < 0 || hdr.Uid >= 1<<32-1 || hdr.Gid < 0 || hdr.Gid >= 1<<32-1 {
		return meta{}, fmt.Errorf("invalid owner %d:%d", hdr.Uid, hdr.Gid)
	}
	mtime := hdr.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	return meta{
		mode: uint32(hdr.Mode & 0o7777),
		ts:   [2]unix.Timespec{timespec(atime), timespec(mtime)},
	}, nil
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// setMetaFd sets owner, extended attributes and mode of the open file or
// directory fd.
func (u *Unpacker) setMetaFd(fd int, hdr *tar.Header, m meta) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := u.setXattrs(hdr, fd, ""); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// setMetaAt sets owner, extended attributes, mode (not for a symbolic
// link) and times of name in the directory dirfd, never following name if
// it is a symbolic link.
func (u *Unpacker) setMetaAt(dirfd int, name string, hdr *tar.Header, m meta, isSymlink bool) error {
	if err := unix.Fchownat(dirfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if hasXattrs(hdr) {
		// There is no lsetxattrat(2) before Linux 6.13: name it through
		// the directory's descriptor in procfs; lsetxattr does not follow
		// the final component.
		if err := u.checkProc(); err != nil {
			return err
		}
		procPath := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
		if err := u.setXattrs(hdr, -1, procPath); err != nil {
			return err
		}
	}
	if !isSymlink {
		err := unix.Fchmodat(dirfd, name, m.mode, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
			// No fchmodat2 (Linux < 6.6). name is the node just made;
			// as long as it is not a symbolic link, following changes
			// nothing.
			var st unix.Stat_t
			if err = unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
				if st.Mode&unix.S_IFMT == unix.S_IFLNK {
					return errors.New("chmod: the entry turned into a symbolic link")
				}
				err = unix.Fchmodat(dirfd, name, m.mode, 0)
			}
		}
		if err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return setTimes(dirfd, name, m.ts)
}

// checkProc makes sure /proc/self/fd is procfs before paths through it
// are used.
func (u *Unpacker) checkProc() error {
	if u.procOK {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/proc/self/fd", &st); err != nil {
		return fmt.Errorf("checking /proc: %w", err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return errors.New("checking /proc: /proc/self/fd is not procfs")
	}
	u.procOK = true
	return nil
}

func setTimes(dirfd int, name string, ts [2]unix.Timespec) error {
	if err := unix.UtimesNanoAt(dirfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// applyDirTimes sets the times of the layer's directories, children before
// their parents, now that nothing more is created in them.
func (u *Unpacker) applyDirTimes() error {
	// Reverse lexical order puts every directory before its parent and
	// keeps siblings together for the directory cache. The sort is
	// stable: of duplicate entries the later one is applied last.
	slices.SortStableFunc(u.dirTimes, func(a, b dirTime) int {
		return strings.Compare(b.unsafePath, a.unsafePath)
	})
	for _, d := range u.dirTimes {
		if err := u.setDirTimes(d); err != nil {
			return fmt.Errorf("entry %q: %w", shorten(d.unsafePath), err)
		}
	}
	return nil
}

func (u *Unpacker) setDirTimes(d dirTime) error {
	if d.unsafePath == "" {
		return setTimes(u.rootFd, ".", d.ts)
	}
	unsafeDir, name := splitPath(d.unsafePath)
	h, err := u.openDir(unsafeDir, false)
	if err == errNotExist {
		return nil // removed later in the layer
	}
	if err != nil {
		return err
	}
	defer h.release()
	var st unix.Stat_t
	if err := unix.Fstatat(h.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return fmt.Errorf("inspecting directory: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil // replaced later in the layer by something that has its own times
	}
	return setTimes(h.fd, name, d.ts)
}
