package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/tree"
)

// paxXattrPrefix is the PAX record prefix of extended attributes, as GNU tar
// and containers/storage write them.
const paxXattrPrefix = "SCHILY.xattr."

// layerWriter streams one layer: tar entries → gzip (default level) → file,
// hashing the compressed stream (the layer digest) and the tar stream (the
// DiffID) on the way. Nothing of the layer is held in memory.
type layerWriter struct {
	f        *os.File
	buf      *bufio.Writer
	gz       *gzip.Writer
	tw       *tar.Writer
	digest   hash.Hash
	diffID   hash.Hash
	packed   counter
	tarBytes counter
	entries  int
	// links maps a (device, inode) of a multiply linked file to the entry
	// name it was first written under, so later names become hardlinks.
	links map[fileID]string
	// tree records what the layer does, for the final-tree statistics.
	tree *treeStats
}

// fileID identifies an inode on the host.
type fileID struct{ dev, ino uint64 }

// counter counts the bytes written through it.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// newLayerWriter creates the blob file at p.
func newLayerWriter(p string, tree *treeStats) (*layerWriter, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating layer blob: %w", err)
	}
	lw := &layerWriter{
		f:      f,
		digest: sha256.New(),
		diffID: sha256.New(),
		links:  map[fileID]string{},
		tree:   tree,
	}
	lw.buf = bufio.NewWriterSize(io.MultiWriter(f, lw.digest, &lw.packed), 1<<20)
	lw.gz = gzip.NewWriter(lw.buf) // gzip.DefaultCompression
	lw.tw = tar.NewWriter(io.MultiWriter(lw.gz, lw.diffID, &lw.tarBytes))
	return lw, nil
}

// abort closes and removes the unfinished blob.
func (lw *layerWriter) abort() {
	lw.f.Close()
	os.Remove(lw.f.Name())
}

// finish completes the tar and gzip streams and returns the blob's
// description.
func (lw *layerWriter) finish() (LayerInfo, error) {
	err := errors.Join(lw.tw.Close(), lw.gz.Close(), lw.buf.Flush(), lw.f.Sync(), lw.f.Close())
	if err != nil {
		os.Remove(lw.f.Name())
		return LayerInfo{}, fmt.Errorf("finishing layer blob %s: %w", lw.f.Name(), err)
	}
	return LayerInfo{
		File:    filepath.Base(lw.f.Name()),
		Digest:  "sha256:" + hex.EncodeToString(lw.digest.Sum(nil)),
		DiffID:  "sha256:" + hex.EncodeToString(lw.diffID.Sum(nil)),
		Size:    lw.packed.n,
		TarSize: lw.tarBytes.n,
		Entries: lw.entries,
	}, nil
}

// header writes one header (no content).
func (lw *layerWriter) header(hdr *tar.Header) error {
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing tar header of %q: %w", hdr.Name, err)
	}
	lw.entries++
	lw.tree.apply(hdr)
	return nil
}

// dir writes a directory entry owned by root.
func (lw *layerWriter) dir(name string, mode int64) error {
	return lw.header(&tar.Header{
		Typeflag: tar.TypeDir, Name: strings.TrimSuffix(name, "/") + "/", Mode: mode,
		ModTime: fixtureTime,
	})
}

// file writes a regular file owned by root.
func (lw *layerWriter) file(name string, mode int64, content string) error {
	if err := lw.header(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)),
		ModTime: fixtureTime,
	}); err != nil {
		return err
	}
	if _, err := io.WriteString(lw.tw, content); err != nil {
		return fmt.Errorf("writing tar content of %q: %w", name, err)
	}
	return nil
}

// symlink writes a symbolic link owned by root.
func (lw *layerWriter) symlink(name, target string) error {
	return lw.header(&tar.Header{
		Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777,
		ModTime: fixtureTime,
	})
}

// hardlink writes a hard link to an earlier entry of the same layer.
func (lw *layerWriter) hardlink(name, target string) error {
	return lw.header(&tar.Header{
		Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: fixtureTime,
	})
}

// whiteout writes the entry that deletes name from the layers below.
func (lw *layerWriter) whiteout(name string) error {
	dir, base := path.Split(name)
	return lw.header(&tar.Header{
		Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o644, ModTime: fixtureTime,
	})
}

// opaque writes the entry that hides the lower layers' content of dir.
func (lw *layerWriter) opaque(dir string) error {
	return lw.header(&tar.Header{
		Typeflag: tar.TypeReg, Name: path.Join(dir, ".wh..wh..opq"), Mode: 0o644, ModTime: fixtureTime,
	})
}

// addTree writes the tree at root (a host directory) under the entry name
// prefix ("" for the image root, "usr/local/go" for a subtree), in lexical
// order, preserving numeric uid/gid, mode bits (setuid/setgid/sticky too),
// mtimes, symlinks, hardlinks, device nodes, FIFOs and xattrs. skip is
// called with each entry name ("etc/passwd", no leading slash); a true result
// leaves the entry (and, for a directory, its contents) out.
func (lw *layerWriter) addTree(root, prefix string, skip func(name string, d fs.DirEntry) bool) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		if rel == "." {
			if prefix == "" {
				return nil // the image root itself has no entry
			}
			name = prefix
		}
		if skip != nil && skip(name, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		return lw.addPath(p, name)
	})
}

// addPath writes the host path p as entry name.
func (lw *layerWriter) addPath(p, name string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0).UTC(),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		if st.Nlink > 1 {
			id := fileID{uint64(st.Dev), st.Ino}
			if first, ok := lw.links[id]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				lw.links[id] = name
			}
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("reading symlink %s: %w", p, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets have no tar form
	}
	xattrs, err := readXattrs(p)
	if err != nil {
		return err
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = xattrs
		hdr.Format = tar.FormatPAX
	}
	if err := lw.header(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(lw.tw, f)
	if err != nil {
		return fmt.Errorf("writing tar content of %q: %w", name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("writing tar content of %q: %s changed while reading", name, p)
	}
	return nil
}

// readXattrs returns the extended attributes of p (not following a symlink)
// as PAX records.
func readXattrs(p string) (map[string]string, error) {
	xattrs, err := tree.Xattrs(p)
	if err != nil || xattrs == nil {
		return nil, err
	}
	recs := make(map[string]string, len(xattrs))
	for k, v := range xattrs {
		recs[paxXattrPrefix+k] = v
	}
	return recs, nil
}

// treeStats follows the layers' entries with OCI semantics (whiteouts,
// opaque directories) to give the size and entry count of the unpacked
// image.
type treeStats struct {
	nodes map[string]node
}

// node is one path of the unpacked tree.
type node struct {
	size  int64  // bytes of a regular file's content; 0 for others
	group string // the first name of a hardlinked file's inode
}

func newTreeStats() *treeStats { return &treeStats{nodes: map[string]node{}} }

// apply records one tar entry. Entries of one layer must be applied in
// stream order; an opaque marker only hides what earlier layers put there
// (the layers built here write it before the directory's new content).
func (t *treeStats) apply(hdr *tar.Header) {
	name := path.Clean("/" + hdr.Name)
	dir, base := path.Dir(name), path.Base(name)
	switch {
	case base == ".wh..wh..opq":
		t.removeBelow(dir)
		return
	case strings.HasPrefix(base, ".wh."):
		victim := path.Join(dir, strings.TrimPrefix(base, ".wh."))
		delete(t.nodes, victim)
		t.removeBelow(victim)
		return
	}
	n := node{group: name}
	switch hdr.Typeflag {
	case tar.TypeReg:
		n.size = hdr.Size
	case tar.TypeLink:
		if target, ok := t.nodes[path.Clean("/"+hdr.Linkname)]; ok {
			n = target
		}
	}
	t.nodes[name] = n
}

// removeBelow deletes everything under dir, not dir itself.
func (t *treeStats) removeBelow(dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p := range t.nodes {
		if strings.HasPrefix(p, prefix) {
			delete(t.nodes, p)
		}
	}
}

// exists reports whether the unpacked tree so far holds name ("/usr/x").
func (t *treeStats) exists(name string) bool {
	_, ok := t.nodes[name]
	return ok
}

// totals returns the number of entries and the bytes of file content of the
// unpacked tree; a hardlinked file's content counts once.
func (t *treeStats) totals() (entries int, bytes int64) {
	seen := map[string]bool{}
	for _, n := range t.nodes {
		entries++
		if !seen[n.group] {
			seen[n.group] = true
			bytes += n.size
		}
	}
	return entries, bytes
}

// sameFilesystem reports whether two paths are on the same filesystem.
func sameFilesystem(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, err
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev, nil
}
