// Package tree snapshots a directory tree as root sees it, so tests can
// compare two unpacked root filesystems entry by entry: type, mode,
// ownership, content hash, symlink target, device numbers, xattrs and
// hardlink groups.
package tree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Node is one entry of a snapshot.
type Node struct {
	Type   fs.FileMode // fs.ModeDir, fs.ModeSymlink, ... or 0 for a regular file
	Mode   fs.FileMode // permission bits with setuid, setgid and sticky
	UID    uint32
	GID    uint32
	Size   int64
	SHA256 string            // regular files
	Link   string            // symlink target
	Rdev   uint64            // devices
	Xattrs map[string]string // all namespaces, values hex-encoded
	// Links lists every path of the snapshot sharing this file's inode
	// (regular files with more than one link), sorted.
	Links []string
}

// Snapshot walks root and returns its entries by path relative to root
// ("/" for root itself). Symlinks are never followed.
func Snapshot(root string) (map[string]Node, error) {
	nodes := map[string]Node{}
	inodes := map[[2]uint64][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = "/" + strings.TrimPrefix(filepath.ToSlash(rel), ".")
		rel = strings.TrimSuffix(rel, "/")
		if rel == "" {
			rel = "/"
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", path, err)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n := Node{
			Type: fi.Mode().Type(),
			Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky),
			UID:  st.Uid,
			GID:  st.Gid,
		}
		if n.Xattrs, err = hexXattrs(path); err != nil {
			return err
		}
		switch {
		case n.Type == 0:
			n.Size = st.Size
			if n.SHA256, err = hashFile(path); err != nil {
				return err
			}
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				inodes[key] = append(inodes[key], rel)
			}
		case n.Type&fs.ModeSymlink != 0:
			if n.Link, err = os.Readlink(path); err != nil {
				return err
			}
		case n.Type&(fs.ModeDevice|fs.ModeCharDevice) != 0:
			n.Rdev = st.Rdev
		}
		nodes[rel] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, paths := range inodes {
		if len(paths) < 2 {
			continue
		}
		sort.Strings(paths)
		for _, p := range paths {
			n := nodes[p]
			n.Links = paths
			nodes[p] = n
		}
	}
	return nodes, nil
}

// Diff lists the differences between snapshots a and b, one line each,
// sorted; an empty result means the trees are identical.
func Diff(a, b map[string]Node) []string {
	var out []string
	for p, na := range a {
		nb, ok := b[p]
		if !ok {
			out = append(out, fmt.Sprintf("%s: only in the first tree (%s)", p, describe(na)))
			continue
		}
		if d := diffNode(na, nb); d != "" {
			out = append(out, p+": "+d)
		}
	}
	for p, nb := range b {
		if _, ok := a[p]; !ok {
			out = append(out, fmt.Sprintf("%s: only in the second tree (%s)", p, describe(nb)))
		}
	}
	sort.Strings(out)
	return out
}

func diffNode(a, b Node) string {
	var d []string
	add := func(what string, x, y any) { d = append(d, fmt.Sprintf("%s %v != %v", what, x, y)) }
	if a.Type != b.Type {
		add("type", a.Type, b.Type)
	}
	if a.Mode != b.Mode {
		add("mode", a.Mode, b.Mode)
	}
	if a.UID != b.UID || a.GID != b.GID {
		add("owner", fmt.Sprintf("%d:%d", a.UID, a.GID), fmt.Sprintf("%d:%d", b.UID, b.GID))
	}
	if a.SHA256 != b.SHA256 || a.Size != b.Size {
		add("content", fmt.Sprintf("%d bytes %.12s", a.Size, a.SHA256), fmt.Sprintf("%d bytes %.12s", b.Size, b.SHA256))
	}
	if a.Link != b.Link {
		add("symlink target", a.Link, b.Link)
	}
	if a.Rdev != b.Rdev {
		add("device", a.Rdev, b.Rdev)
	}
	if !mapsEqual(a.Xattrs, b.Xattrs) {
		add("xattrs", a.Xattrs, b.Xattrs)
	}
	if !slices.Equal(a.Links, b.Links) {
		add("hardlinks", a.Links, b.Links)
	}
	return strings.Join(d, "; ")
}

func describe(n Node) string {
	if n.Type == 0 {
		return fmt.Sprintf("file, %d bytes", n.Size)
	}
	return n.Type.String()
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// Xattrs returns the extended attributes of path, all namespaces, without
// following a symbolic link; nil when there are none or the file system has
// none. An attribute removed while it is read is left out.
func Xattrs(path string) (map[string]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", path, err)
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", path, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsize, err := unix.Lgetxattr(path, name, nil)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, path, err)
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Lgetxattr(path, name, val); err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, path, err)
		}
		out[name] = string(val[:vsize])
	}
	return out, nil
}

// hexXattrs is Xattrs with the values hex-encoded, for printable diffs.
func hexXattrs(path string) (map[string]string, error) {
	raw, err := Xattrs(path)
	if err != nil || raw == nil {
		return nil, err
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		out[k] = fmt.Sprintf("%x", v)
	}
	return out, nil
}
