// Package ociimage builds small OCI/Docker images in memory and pushes them
// to a registry, for tests and demos.
//
// Layers are built from Entry values (Layer, File, Dir, Symlink, ...) and are
// deterministic: the same entries give the same digest. BusyboxApp builds a
// runnable image around a static busybox; Rootfs writes the same tree into a
// host directory. Push and PushIndex upload images with go-containerregistry.
//
// The package does not import testing.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultModTimeUnix is the modification time (seconds since the epoch,
// 2000-01-01T00:00:00Z) of entries whose ModTime is zero, and the creation
// time of images, so that digests do not depend on the clock.
const DefaultModTimeUnix = 946684800

// WhiteoutPrefix marks a deleted path in a layer: "dir/.wh.NAME" removes
// "dir/NAME" from the layers below.
const WhiteoutPrefix = ".wh."

// OpaqueWhiteout is the name of the entry that hides everything below a
// directory in lower layers.
const OpaqueWhiteout = ".wh..wh..opq"

// xattrPAXPrefix is the PAX record prefix of extended attributes
// (the form GNU tar and containers/storage write).
const xattrPAXPrefix = "SCHILY.xattr."

// Entry is one tar entry of a layer.
type Entry struct {
	// Path is the tar entry name, written exactly as given so tests can
	// craft hostile names ("../x", "/abs"). The helper constructors
	// (File, Dir, ...) produce clean relative names.
	Path string
	// Type is the tar type flag: tar.TypeReg (also for Type 0), TypeDir,
	// TypeSymlink, TypeLink, TypeChar, TypeBlock or TypeFifo.
	Type byte
	// Mode is the permission bits plus setuid/setgid/sticky (e.g. 0o4755,
	// 0o1777), as stored in the tar header.
	Mode int64
	// UID and GID are the numeric owner.
	UID, GID int
	// Content is the data of a regular file.
	Content []byte
	// Linkname is the target of a symlink (as written) or of a hardlink
	// (the name of an earlier entry).
	Linkname string
	// Devmajor and Devminor are the device numbers of TypeChar/TypeBlock.
	Devmajor, Devminor int64
	// Xattrs are extended attributes (e.g. "user.foo", "security.capability"),
	// stored as PAX records SCHILY.xattr.NAME.
	Xattrs map[string]string
	// ModTime is the modification time. Zero means DefaultModTimeUnix.
	ModTime time.Time
}

// cleanPath makes p relative and free of "." and ".." elements.
func cleanPath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// File returns a regular file entry owned by root.
func File(p string, content []byte, mode int64) Entry {
	return Entry{Path: cleanPath(p), Type: tar.TypeReg, Mode: mode, Content: content}
}

// Dir returns a directory entry owned by root. Its name ends in "/", as
// docker and buildkit write it.
func Dir(p string, mode int64) Entry {
	return Entry{Path: cleanPath(p) + "/", Type: tar.TypeDir, Mode: mode}
}

// Symlink returns a symbolic link at p pointing to target (kept verbatim,
// absolute or relative).
func Symlink(p, target string) Entry {
	return Entry{Path: cleanPath(p), Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}

// Hardlink returns a hard link at p to the earlier entry target.
func Hardlink(p, target string) Entry {
	return Entry{Path: cleanPath(p), Type: tar.TypeLink, Linkname: cleanPath(target)}
}

// Whiteout returns the entry that deletes p ("dir/.wh.NAME").
func Whiteout(p string) Entry {
	dir, name := path.Split(cleanPath(p))
	return Entry{Path: dir + WhiteoutPrefix + name, Type: tar.TypeReg}
}

// OpaqueDir returns the entry that hides the lower layers' content of
// directory p ("p/.wh..wh..opq"). The layer should also contain Dir(p, ...).
func OpaqueDir(p string) Entry {
	return Entry{Path: path.Join(cleanPath(p), OpaqueWhiteout), Type: tar.TypeReg}
}

// Layer returns a gzip-compressed tar layer holding entries in the given
// order, with media type application/vnd.docker.image.rootfs.diff.tar.gzip
// (Image switches it to the OCI type for OCI images). The same entries always
// give the same digest.
func Layer(entries ...Entry) (v1.Layer, error) {
	raw, err := tarBytes(entries)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("creating gzip writer: %w", err)
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	b := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return nil, fmt.Errorf("creating layer: %w", err)
	}
	return l, nil
}

// tarBytes writes entries as an uncompressed tar stream.
func tarBytes(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr, err := e.header()
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing tar header of %q: %w", e.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg && len(e.Content) > 0 {
			if _, err := tw.Write(e.Content); err != nil {
				return nil, fmt.Errorf("writing tar content of %q: %w", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finishing tar: %w", err)
	}
	return buf.Bytes(), nil
}

// header converts e into a tar header.
func (e Entry) header() (*tar.Header, error) {
	typ := e.Type
	if typ == 0 {
		typ = tar.TypeReg
	}
	mtime := e.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(DefaultModTimeUnix, 0)
	}
	hdr := &tar.Header{
		Typeflag: typ,
		Name:     e.Path,
		Linkname: e.Linkname,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		ModTime:  mtime.UTC(),
		Devmajor: e.Devmajor,
		Devminor: e.Devminor,
	}
	switch typ {
	case tar.TypeReg:
		hdr.Size = int64(len(e.Content))
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if len(e.Content) > 0 {
			return nil, fmt.Errorf("tar entry %q: content on a non-regular entry", e.Path)
		}
	default:
		return nil, fmt.Errorf("tar entry %q: unsupported type %q", e.Path, typ)
	}
	if len(e.Xattrs) > 0 {
		keys := make([]string, 0, len(e.Xattrs))
		for k := range e.Xattrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		hdr.PAXRecords = make(map[string]string, len(keys))
		for _, k := range keys {
			hdr.PAXRecords[xattrPAXPrefix+k] = e.Xattrs[k]
		}
		hdr.Format = tar.FormatPAX
	}
	return hdr, nil
}
