package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/man8s/mbctl/internal/image/mediatype"
)

// maxManifestSize bounds the manifests and indexes the walk reads into
// memory; registries refuse bigger ones too.
const maxManifestSize = 16 << 20

// PruneResult reports what [Cache.Prune] or [Cache.Clear] deleted.
type PruneResult struct {
	// Blobs is the number of blobs deleted.
	Blobs int
	// TempFiles is the number of temporary files deleted, left behind by
	// writers that were killed.
	TempFiles int
	// Bytes is the space freed by both.
	Bytes int64
	// Missing lists, sorted, the blobs that an image in index.json needs but
	// that are absent or unreadable: its manifest or index, and the config
	// and layers of each manifest that is present. The manifests of an
	// index's other platforms are normally not pulled and are not listed.
	Missing []v1.Hash
}

// Prune deletes every blob that no entry of index.json references, and
// every temporary file. References are followed from an index to its child
// manifests (recursively) and from a manifest to its config and layers.
// Prune holds the exclusive cache lock, so it waits for running pulls;
// if ctx is cancelled it stops and returns what it did so far with ctx's
// error.
func (c *Cache) Prune(ctx context.Context) (PruneResult, error) {
	var res PruneResult
	release, err := c.Acquire(ctx, false)
	if err != nil {
		return res, fmt.Errorf("pruning cache: %w", err)
	}
	defer release()
	idx, err := c.readIndex()
	if err != nil {
		return res, fmt.Errorf("pruning cache: %w", err)
	}
	missing := map[v1.Hash]bool{}
	w := walker{c: c, seen: map[v1.Hash]bool{}, missing: func(d v1.Hash) { missing[d] = true }}
	for _, m := range idx.Manifests {
		w.walk(m, true)
	}
	for d := range missing {
		res.Missing = append(res.Missing, d)
	}
	sort.Slice(res.Missing, func(i, j int) bool { return res.Missing[i].String() < res.Missing[j].String() })
	if err := c.sweep(ctx, w.seen, &res); err != nil {
		return res, fmt.Errorf("pruning cache: %w", err)
	}
	return res, nil
}

// Clear deletes every blob and temporary file and empties index.json; the
// layout itself stays. It holds the exclusive cache lock, waiting for running
// pulls, and stops with ctx's error if ctx is cancelled.
func (c *Cache) Clear(ctx context.Context) (PruneResult, error) {
	var res PruneResult
	release, err := c.Acquire(ctx, false)
	if err != nil {
		return res, fmt.Errorf("clearing cache: %w", err)
	}
	defer release()
	// Empty the index first: if we are interrupted, the blobs left over are
	// unreferenced, which the next Prune or Clear removes.
	unlock, err := c.lockIndex()
	if err != nil {
		return res, fmt.Errorf("clearing cache: %w", err)
	}
	err = c.writeIndex(emptyIndex())
	unlock()
	if err != nil {
		return res, fmt.Errorf("clearing cache: %w", err)
	}
	if err := c.sweep(ctx, nil, &res); err != nil {
		return res, fmt.Errorf("clearing cache: %w", err)
	}
	// What is kept per image beside the blobs (the init probe's findings,
	// see provision's probe cache) goes with the images.
	if err := os.RemoveAll(filepath.Join(c.dir, "probes")); err != nil {
		return res, fmt.Errorf("clearing cache: %w", err)
	}
	return res, nil
}

// sweep deletes the blobs not in keep and all temporary files: those of
// blob writers in blobs/*/ and those of index.json writers. The caller holds
// the exclusive cache lock, so no blob writer is running.
func (c *Cache) sweep(ctx context.Context, keep map[v1.Hash]bool, res *PruneResult) error {
	var errs []error
	remove := func(p string, fi fs.FileInfo, temp bool) {
		if err := os.Remove(p); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return
		}
		if temp {
			res.TempFiles++
		} else {
			res.Blobs++
		}
		res.Bytes += fi.Size()
	}
	root := filepath.Join(c.dir, blobsDir)
	algs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		dir := filepath.Join(root, alg.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return errors.Join(append(errs, err)...)
			}
			fi, err := f.Info()
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			p := filepath.Join(dir, f.Name())
			switch {
			case strings.HasPrefix(f.Name(), tmpPrefix):
				remove(p, fi, true)
			case !keep[v1.Hash{Algorithm: alg.Name(), Hex: f.Name()}]:
				remove(p, fi, false)
			}
		}
	}
	// Temporary files of index.json writers (fsutil.WriteFileAtomic) that
	// were killed; the index lock keeps us from deleting a live one.
	unlock, err := c.lockIndex()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer unlock()
	tmps, err := filepath.Glob(filepath.Join(c.dir, "."+indexFile+".tmp*"))
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range tmps {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			remove(p, fi, true)
		}
	}
	return errors.Join(errs...)
}

// walker follows the references of descriptors through the cache.
type walker struct {
	c *Cache
	// seen holds every digest reached so far; each is visited once.
	seen map[v1.Hash]bool
	// present, if set, is called for each blob reached that exists.
	present func(d v1.Hash, size int64)
	// missing, if set, is called for each required blob that is absent or
	// unreadable.
	missing func(d v1.Hash)
	// visit, if set, is called with each descriptor reached, before it is
	// looked at.
	visit func(d v1.Descriptor)
	// read reads a manifest or index; nil means ReadBlob, which deletes a
	// corrupt blob.
	read func(d v1.Hash) ([]byte, error)
}

type blobKind int

const (
	kindOther blobKind = iota
	kindManifest
	kindIndex
	kindUnknown // no media type: look at the content
)

func kindOf(mt types.MediaType) blobKind {
	switch {
	case mt == "":
		return kindUnknown
	case mt.IsIndex():
		return kindIndex
	case mt.IsImage():
		return kindManifest
	}
	return kindOther
}

// walk visits d and, if it is a manifest or index, what it references.
// required says whether d's absence is reported.
func (w *walker) walk(d v1.Descriptor, required bool) {
	if w.seen[d.Digest] {
		return
	}
	w.seen[d.Digest] = true
	if w.visit != nil {
		w.visit(d)
	}
	p := w.c.Path(d.Digest)
	if p == "" {
		return // not a digest the cache stores
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		if required && w.missing != nil {
			w.missing(d.Digest)
		}
		return
	}
	if w.present != nil {
		w.present(d.Digest, fi.Size())
	}
	kind := kindOf(d.MediaType)
	if kind == kindOther || fi.Size() > maxManifestSize {
		return
	}
	read := w.read
	if read == nil {
		read = w.c.ReadBlob
	}
	data, err := read(d.Digest)
	if err != nil {
		if required && w.missing != nil {
			w.missing(d.Digest)
		}
		return
	}
	if kind == kindUnknown {
		kind = kindOf(mediatype.Of("", data))
	}
	switch kind {
	case kindIndex:
		idx, err := v1.ParseIndexManifest(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, child := range idx.Manifests {
			w.walk(child, false)
		}
	case kindManifest:
		m, err := v1.ParseManifest(bytes.NewReader(data))
		if err != nil {
			return
		}
		w.walk(m.Config, true)
		for _, l := range m.Layers {
			w.walk(l, true)
		}
	}
}
