// Package unpack applies OCI image layers (uncompressed tar streams) to a
// root filesystem directory.
//
// Layers come from untrusted images and are applied as root, so every path
// in a layer is resolved inside the root as if the root were "/": ".."
// stops at the root, and symbolic links, absolute ones too, are followed
// within the root only (openat2 with RESOLVE_IN_ROOT). An entry is then
// created relative to its parent directory's file descriptor with the
// *at system calls, never following a symbolic link in the final
// component. Nothing outside the root is created, written, removed, linked
// or has its metadata changed.
//
// The layer semantics are those of the OCI image specification
// (image-spec layer.md): whiteouts (".wh.NAME"), opaque directories
// (".wh..wh..opq"), type changes between layers, hard links within and
// across layers, numeric ownership, extended attributes, and modes
// including the setuid, setgid and sticky bits.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/fsutil"
)

const (
	// maxPathLen is the longest entry name or hard link target accepted,
	// PATH_MAX on Linux.
	maxPathLen = 4096
	// copyBufSize is the size of the buffer file contents are copied with.
	copyBufSize = 1 << 20
	// maxCachedDirs bounds the chain of open directory descriptors kept
	// between entries.
	maxCachedDirs = 128
	// maxTreeDepth bounds the recursion when removing a directory tree.
	maxTreeDepth = 4096
	// tarBlockSize is the size of a tar block; the archive ends with two
	// blocks of zeros.
	tarBlockSize = 512

	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Options configures an Unpacker.
type Options struct {
	// Log receives warnings about what could not be reproduced exactly,
	// each kind once per Unpacker: extended attributes that are skipped or
	// that the file system does not support. Nil discards them.
	Log *slog.Logger
}

// Stats counts what one Apply did.
type Stats struct {
	// Entries is the number of tar entries read, of any kind.
	Entries int
	// Files, Dirs, Symlinks and Hardlinks count the entries of each type
	// that were created.
	Files, Dirs, Symlinks, Hardlinks int
	// Devices counts character and block devices and FIFOs.
	Devices int
	// Whiteouts counts whiteout and opaque-directory entries.
	Whiteouts int
	// Bytes is the size of the regular files' contents written.
	Bytes int64
	// Skipped counts the entries not created because the next layer
	// deletes them (see Doomed).
	Skipped int
}

// Add adds the counts of o to s.
func (s *Stats) Add(o Stats) {
	s.Entries += o.Entries
	s.Files += o.Files
	s.Dirs += o.Dirs
	s.Symlinks += o.Symlinks
	s.Hardlinks += o.Hardlinks
	s.Devices += o.Devices
	s.Whiteouts += o.Whiteouts
	s.Bytes += o.Bytes
	s.Skipped += o.Skipped
}

// Unpacker applies layers, in order, to one root directory. It holds the
// root open from New until Close, and expects nothing else to change the
// tree below the root meanwhile (it keeps directories open between
// entries). An Unpacker is not safe for concurrent use.
type Unpacker struct {
	root   *os.File // the root directory, opened O_DIRECTORY
	rootFd int
	uid    int // owner of the directories created for missing parents
	gid    int
	log    *slog.Logger
	buf    []byte
	warned map[string]struct{}
	procOK bool // /proc/self/fd was checked to be procfs

	// Fast path for the common regular file (see regular): when fastMeta
	// is set, a file owned by uid:gid, without xattrs or special mode bits
	// and with a mode the umask leaves alone, is created with its final
	// mode and needs no fchown or fchmod. It requires knowing which
	// directories pass their group on (setgid), so it is only on for a
	// root that was empty, and goes off for good if a setgid directory is
	// reached through a symbolic link. A default ACL (on the root or set
	// by a layer) replaces the umask, so it turns the fast path off too.
	fastMeta bool
	umask    uint32
	sgid     map[string]struct{} // setgid directories, by clean path

	// dirs is a chain of open directories below the root, each one the
	// parent of the next, reached without crossing a symbolic link; see
	// openDir.
	dirs []cachedDir

	// State of the layer being applied.
	doomed   *Doomed             // what the next layer deletes, if known
	skipped  map[string]struct{} // paths not created as doomed
	upper    map[string]struct{} // paths created by this layer and their ancestors
	dirTimes []dirTime           // directory times, applied at the end of the layer
	stats    Stats
}

// dirTime is a directory's access and modification time, set once the
// layer has filled the directory.
type dirTime struct {
	unsafePath string
	ts         [2]unix.Timespec
}

// New opens root, an existing directory, for applying layers to it.
// It fails if the kernel lacks openat2 (Linux 5.6 or later is required).
func New(root string, opts Options) (*Unpacker, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", root, err)
	}
	probe, err := fsutil.OpenInRoot(fd, ".", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("opening root %s: openat2 is not available (Linux 5.6 or later is required): %w", root, err)
		}
		return nil, fmt.Errorf("opening root %s: %w", root, err)
	}
	_ = unix.Close(probe)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &Unpacker{
		root:    os.NewFile(uintptr(fd), root),
		rootFd:  fd,
		uid:     unix.Geteuid(),
		gid:     unix.Getegid(),
		log:     log,
		buf:     make([]byte, copyBufSize),
		warned:  make(map[string]struct{}),
		upper:   make(map[string]struct{}),
		skipped: make(map[string]struct{}),
		sgid:    make(map[string]struct{}),
	}
	u.umask, u.fastMeta = processUmask()
	if u.fastMeta {
		var st unix.Stat_t
		names, err := u.root.Readdirnames(1)
		u.fastMeta = len(names) == 0 && errors.Is(err, io.EOF) &&
			unix.Fstat(fd, &st) == nil && st.Mode&unix.S_ISGID == 0
	}
	if u.fastMeta {
		// A default ACL on the root gives new entries their mode instead
		// of the umask (see bornExact), as one set by a layer does.
		if n, err := unix.Fgetxattr(fd, "system.posix_acl_default", nil); err == nil && n > 0 {
			u.fastMeta = false
		}
	}
	return u, nil
}

// processUmask reads the process's umask without changing it (umask(2)
// can only be read by setting it, which would race with other goroutines).
func processUmask() (uint32, bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(m), err == nil
		}
	}
	return 0, false
}

// noteDirMode records whether the directory at unsafePath, reached exactly
// or through a symbolic link (exact false), now has the setgid bit.
func (u *Unpacker) noteDirMode(unsafePath string, exact bool, mode uint32) {
	switch {
	case mode&unix.S_ISGID == 0:
		delete(u.sgid, unsafePath)
	case exact:
		u.sgid[unsafePath] = struct{}{}
	default:
		u.fastMeta = false
	}
}

// Close releases the root and every cached directory.
func (u *Unpacker) Close() error {
	if u.root == nil {
		return nil
	}
	u.dropDirs(0)
	err := u.root.Close()
	u.root, u.rootFd = nil, -1
	return err
}

// Apply applies one layer, an uncompressed tar stream, on top of what the
// root holds. Layers must be applied in order. The tar stream must end
// with its end-of-archive marker; a stream that ends early is an error.
//
// On error the root is left partly updated and should be discarded.
// Apply returns when ctx is cancelled, with ctx's error.
func (u *Unpacker) Apply(ctx context.Context, layer io.Reader) (Stats, error) {
	if u.root == nil {
		return Stats{}, errors.New("applying layer: unpacker is closed")
	}
	u.stats = Stats{}
	clear(u.upper)
	u.dirTimes = u.dirTimes[:0]
	u.dropDirs(0)
	defer u.dropDirs(0)

	tail := &tailReader{r: layer}
	tr := tar.NewReader(tail)
	for {
		if err := ctx.Err(); err != nil {
			return u.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if tail.zeros < tarBlockSize {
				return u.stats, fmt.Errorf("tar stream ends after %d entries without an end-of-archive marker: %w",
					u.stats.Entries, io.ErrUnexpectedEOF)
			}
			break
		}
		if err != nil {
			return u.stats, fmt.Errorf("reading tar header after %d entries: %w", u.stats.Entries, err)
		}
		u.stats.Entries++
		if err := u.entry(ctx, hdr, tr); err != nil {
			return u.stats, fmt.Errorf("entry %q: %w", shorten(hdr.Name), err)
		}
	}
	if err := u.applyDirTimes(); err != nil {
		return u.stats, err
	}
	return u.stats, nil
}

// entry applies one tar entry. r reads its contents.
func (u *Unpacker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header: nothing in it applies to files
	}
	if len(hdr.Name) > maxPathLen {
		return fmt.Errorf("name is longer than %d bytes", maxPathLen)
	}
	unsafePath := cleanPath(hdr.Name)
	unsafeDir, name := splitPath(unsafePath)
	if strings.HasPrefix(name, whiteoutPrefix) {
		return u.whiteout(unsafeDir, name)
	}
	if strings.HasPrefix(unsafeDir, whiteoutMeta) || strings.Contains(unsafeDir, "/"+whiteoutMeta) {
		return nil // inside AUFS metadata (.wh..wh.plnk/...): never extracted
	}
	if unsafePath == "" {
		return u.rootEntry(hdr)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return u.regular(ctx, hdr, unsafePath, unsafeDir, name, r)
	case tar.TypeDir:
		return u.directory(hdr, unsafePath, unsafeDir, name)
	case tar.TypeSymlink:
		return u.symlink(hdr, unsafePath, unsafeDir, name)
	case tar.TypeLink:
		return u.hardlink(hdr, unsafePath, unsafeDir, name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.device(hdr, unsafePath, unsafeDir, name)
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
}

// typeName names a tar entry type for error messages.
func typeName(typ byte) string {
	switch typ {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return "regular file"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeDir:
		return "directory"
	}
	return fmt.Sprintf("type %q", typ)
}

// markUpper records that unsafePath was created by the current layer, so
// that whiteouts of this layer keep it, and its ancestors with it.
func (u *Unpacker) markUpper(unsafePath string) {
	u.upper[unsafePath] = struct{}{}
	for p := unsafePath; ; {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return
		}
		p = p[:i]
		if _, ok := u.upper[p]; ok {
			return // its ancestors are recorded already
		}
		u.upper[p] = struct{}{}
	}
}

// warnOnce logs msg the first time key is seen.
func (u *Unpacker) warnOnce(key, msg string, args ...any) {
	if _, ok := u.warned[key]; ok {
		return
	}
	u.warned[key] = struct{}{}
	u.log.Warn(msg, args...)
}

// tailReader counts the zero bytes at the end of what has been read, to
// tell a tar stream that ends with its end-of-archive marker from one cut
// short at a block boundary (archive/tar reports io.EOF for both).
type tailReader struct {
	r     io.Reader
	zeros int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		i := n
		for i > 0 && p[i-1] == 0 {
			i--
		}
		if i == 0 {
			t.zeros += int64(n)
		} else {
			t.zeros = int64(n - i)
		}
	}
	return n, err
}

// shorten cuts a name for an error message.
func shorten(name string) string {
	const max = 256
	if len(name) <= max {
		return name
	}
	return name[:max] + "..."
}
