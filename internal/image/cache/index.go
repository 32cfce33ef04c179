package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/man8s/mbctl/internal/fsutil"
)

// Annotations the cache sets on the descriptors in index.json.
const (
	// AnnotationRefName holds the full image reference, such as
	// "docker.io/library/registry:latest".
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationLastUsed holds when the reference was last pulled
	// (RFC 3339, UTC).
	AnnotationLastUsed = "io.man8s.last-used"
	// AnnotationPulled holds when the reference was first pulled with the
	// digest it has now (RFC 3339, UTC).
	AnnotationPulled = "io.man8s.pulled"
	// AnnotationRecovered marks a descriptor that a rebuild of an
	// unreadable index.json found among the blobs (see [Cache.Verify]); it
	// holds when (RFC 3339, UTC). Such a descriptor has no reference name:
	// tags are only in index.json. Tagging the same digest replaces it.
	AnnotationRecovered = "io.man8s.recovered"
)

// Entry is one cached image: a reference in index.json.
type Entry struct {
	// Ref is the full reference, e.g. "docker.io/library/registry:latest";
	// empty for a descriptor that another tool wrote without a name.
	Ref string
	// Digest and MediaType are those of the image manifest or index.
	Digest    v1.Hash
	MediaType types.MediaType
	// Size is the total size of the blobs of the image that are in the
	// cache: the manifest, its config and layers, and for an index its
	// child manifests and theirs. A blob that several of them share is
	// counted once; blobs shared with other entries count in each.
	Size int64
	// LastUsed and Pulled are zero if the annotation is missing.
	LastUsed, Pulled time.Time
}

func emptyIndex() *v1.IndexManifest {
	return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
}

func emptyIndexJSON() []byte {
	data, err := marshalIndex(emptyIndex())
	if err != nil {
		panic(err) // cannot happen for a fixed value
	}
	return data
}

func marshalIndex(idx *v1.IndexManifest) ([]byte, error) {
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// corruptIndexError reports an index.json that was read but is not a valid
// OCI index; the cache rebuilds such a file (see rebuildIndexLocked).
type corruptIndexError struct {
	path string
	err  error
}

func (e *corruptIndexError) Error() string {
	return fmt.Sprintf("%s is not a valid OCI image index: %v", e.path, e.err)
}

func (e *corruptIndexError) Unwrap() error { return e.err }

// loadIndex reads and parses index.json, without repairing it. A missing
// file gives an error wrapping fs.ErrNotExist, content that is not an index
// a *corruptIndexError.
func (c *Cache) loadIndex() (*v1.IndexManifest, error) {
	p := c.indexPath()
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err == nil && idx.SchemaVersion != 2 {
		err = fmt.Errorf("schemaVersion is %d, want 2", idx.SchemaVersion)
	}
	if err != nil {
		return nil, &corruptIndexError{path: p, err: err}
	}
	return idx, nil
}

// readIndex reads index.json. It needs no lock: the file is only ever
// replaced by a rename. An index.json that is not a valid index is rebuilt
// (under the index lock) and the rebuilt index returned.
func (c *Cache) readIndex() (*v1.IndexManifest, error) {
	idx, err := c.loadIndex()
	if _, ok := errors.AsType[*corruptIndexError](err); !ok {
		return idx, err
	}
	unlock, err := c.lockIndex()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have rebuilt it while we waited for the lock.
	idx, err = c.loadIndex()
	if cerr, ok := errors.AsType[*corruptIndexError](err); ok {
		idx, _, err = c.rebuildIndexLocked(context.Background(), cerr)
	}
	return idx, err
}

// updateIndex runs fn on index.json under the index lock and writes the
// result back atomically if fn reports a change (or if the file is
// missing). A missing index.json counts as an empty one; one that is not a
// valid index is rebuilt first.
func (c *Cache) updateIndex(fn func(idx *v1.IndexManifest) (changed bool, err error)) error {
	unlock, err := c.lockIndex()
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := c.loadIndex()
	missing := errors.Is(err, fs.ErrNotExist)
	if cerr, ok := errors.AsType[*corruptIndexError](err); ok {
		idx, _, err = c.rebuildIndexLocked(context.Background(), cerr)
	}
	switch {
	case missing:
		idx = emptyIndex()
	case err != nil:
		return err
	}
	changed, err := fn(idx)
	if err != nil || (!changed && !missing) {
		return err
	}
	return c.writeIndex(idx)
}

// writeIndex replaces index.json; the caller holds the index lock.
func (c *Cache) writeIndex(idx *v1.IndexManifest) error {
	p := c.indexPath()
	data, err := marshalIndex(idx)
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := fsutil.WriteFileAtomic(p, data, filePerm); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

func refOf(d v1.Descriptor) string { return d.Annotations[AnnotationRefName] }

// Tag records in index.json that ref (a full reference such as
// "docker.io/library/registry:latest") names the image manifest or index
// desc, replacing any previous entry for ref. It sets the annotations
// [AnnotationRefName], [AnnotationLastUsed] (now) and [AnnotationPulled]
// (now, or kept from the previous entry if that had the same digest) on a
// copy of desc; other annotations of desc are kept. The manifest blob must
// already be in the cache, and the caller should still hold the shared lock
// under which it wrote the image's blobs (see the package documentation).
func (c *Cache) Tag(ref string, desc v1.Descriptor) error {
	if ref == "" {
		return errors.New("tagging image: empty reference")
	}
	if !c.Stat(desc.Digest, desc.Size) {
		return fmt.Errorf("tagging %s: manifest %s (%d bytes): %w", ref, desc.Digest, desc.Size, fs.ErrNotExist)
	}
	now := c.now().UTC().Format(time.RFC3339)
	ann := make(map[string]string, len(desc.Annotations)+3)
	for k, v := range desc.Annotations {
		ann[k] = v
	}
	ann[AnnotationRefName] = ref
	ann[AnnotationPulled] = now
	ann[AnnotationLastUsed] = now
	desc.Annotations = ann
	err := c.updateIndex(func(idx *v1.IndexManifest) (bool, error) {
		kept := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			switch {
			case refOf(m) == "" && m.Digest == desc.Digest && m.Annotations[AnnotationRecovered] != "":
				// Recovered without its tag, which this one is.
			case refOf(m) != ref:
				kept = append(kept, m)
			case m.Digest == desc.Digest && m.Annotations[AnnotationPulled] != "":
				ann[AnnotationPulled] = m.Annotations[AnnotationPulled]
			}
		}
		idx.Manifests = append(kept, desc)
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("tagging %s: %w", ref, err)
	}
	return nil
}

// List returns the cached images sorted by reference. It takes no lock and
// changes nothing, except that a manifest found corrupt is deleted (see
// [Cache.ReadBlob]) and an index.json that is not a valid index is rebuilt
// (see [Cache.Verify]).
func (c *Cache) List() ([]Entry, error) {
	idx, err := c.readIndex()
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, len(idx.Manifests))
	for _, m := range idx.Manifests {
		e := Entry{
			Ref:       refOf(m),
			Digest:    m.Digest,
			MediaType: m.MediaType,
			LastUsed:  parseTime(m.Annotations[AnnotationLastUsed]),
			Pulled:    parseTime(m.Annotations[AnnotationPulled]),
		}
		w := walker{c: c, seen: map[v1.Hash]bool{}, present: func(_ v1.Hash, size int64) { e.Size += size }}
		w.walk(m, true)
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].Ref != entries[j].Ref {
			return entries[i].Ref < entries[j].Ref
		}
		return entries[i].Digest.String() < entries[j].Digest.String()
	})
	return entries, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
