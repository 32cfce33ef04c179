package corpus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The cache holds one OCI image layout per replica and key:
//
//	DIR/NAME/KEY/{oci-layout,index.json,blobs/sha256/...,packages.txt}
//
// An entry is written into a temp dir beside it and renamed into place, so
// a reader sees a whole entry or none; storing a new key of a replica
// removes its older keys.

// entryDir is the directory of a cache entry.
func entryDir(dir, name, key string) string {
	return filepath.Join(dir, name, key[:32])
}

// loadCached returns the cached image of name at key. An entry that is
// missing is fs.ErrNotExist; one that is incomplete (a blob gone, a size
// that differs) is another error, and the caller builds again.
func loadCached(dir, name, key string) (v1.Image, error) {
	p := entryDir(dir, name, key)
	if _, err := os.Stat(filepath.Join(p, "index.json")); err != nil {
		return nil, err
	}
	lp, err := layout.FromPath(p)
	if err != nil {
		return nil, err
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("%s: %d images, want 1", p, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		fi, err := os.Stat(filepath.Join(p, "blobs", d.Digest.Algorithm, d.Digest.Hex))
		if err != nil {
			return nil, fmt.Errorf("%s: blob %s: %w", p, d.Digest, errors.Join(err, errors.New("incomplete entry")))
		}
		if fi.Size() != d.Size {
			return nil, fmt.Errorf("%s: blob %s holds %d bytes, want %d", p, d.Digest, fi.Size(), d.Size)
		}
	}
	return img, nil
}

// store writes img as the entry of name at key, removes the replica's
// other entries, and returns the image as read back from the cache.
func store(dir, name, key string, img v1.Image, packages []string) (v1.Image, error) {
	parent := filepath.Join(dir, name)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // gone after the rename; left only on failure
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := lp.AppendImage(img); err != nil {
		return nil, err
	}
	list := "# the Debian packages of replica " + name + ", key " + key + "\n" + strings.Join(packages, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(tmp, "packages.txt"), []byte(list), 0o644); err != nil {
		return nil, err
	}
	final := entryDir(dir, name, key)
	if err := os.Rename(tmp, final); err != nil {
		// Another run stored the same key first: keep its entry.
		if _, statErr := os.Stat(filepath.Join(final, "index.json")); statErr != nil {
			return nil, err
		}
	}
	if err := removeOthers(parent, filepath.Base(final)); err != nil {
		return nil, err
	}
	return loadCached(dir, name, key)
}

// removeOthers deletes the entries in parent other than keep, and temp
// dirs that a run killed mid-write left (older than an hour: a younger one
// may be another run's, still writing).
func removeOthers(parent, keep string) error {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.Name() == keep {
			continue
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			fi, err := e.Info()
			if err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(parent, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
