package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/image/mediatype"
)

// corruptSuffix is inserted between "index.json" and the time in the name
// of an index.json that was moved aside.
const corruptSuffix = ".corrupt-"

// indexRebuild is what rebuildIndexLocked did.
type indexRebuild struct {
	// movedTo is where the old index.json went; "" if there was none.
	movedTo string
	// recovered are the descriptors of the rebuilt index.
	recovered []v1.Descriptor
}

// rebuildIndexLocked replaces an index.json that cannot be used (cause says
// why) by one recovered from the blobs, and returns it. The caller holds the
// index lock, so no concurrent Tag is lost: it waits, then updates the
// rebuilt index.
//
// The old file is kept as index.json.corrupt-TIME (UTC, nanoseconds, with
// "-N" added if that exists) for whoever wants to look at it. The new index
// lists, with [AnnotationRecovered], every manifest among the blobs whose
// config and layers are all present with the sizes it gives, and every
// index with at least one such manifest (whose manifests are then not
// listed themselves). Tags cannot be recovered: they exist only in
// index.json, so the recovered entries have no reference name until the
// images are pulled again; but their blobs survive a Prune. If the blobs
// cannot be listed, the new index is empty.
//
// "Present with the right size" is all that is checked of configs and
// layers: hashing every layer would make this slow. A corrupt one is found
// when it is used, or by [Cache.Verify], which removes bad blobs before it
// rebuilds.
func (c *Cache) rebuildIndexLocked(ctx context.Context, cause error) (*v1.IndexManifest, indexRebuild, error) {
	p := c.indexPath()
	var res indexRebuild
	descs, err := c.recoverFromBlobs(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, res, fmt.Errorf("rebuilding %s (%v): %w", p, cause, ctxErr)
		}
		c.log.Warn("cannot list the cache blobs to recover index.json from; starting an empty one", "path", p, "err", err)
		descs = nil
	}
	if res.movedTo, err = c.moveIndexAside(); err != nil {
		return nil, res, fmt.Errorf("%w; moving it aside to rebuild it: %w (fix the cause, or remove %s and its images are forgotten)", cause, err, p)
	}
	idx := emptyIndex()
	idx.Manifests = append(idx.Manifests, descs...)
	if err := c.writeIndex(idx); err != nil {
		return nil, res, fmt.Errorf("rebuilding %s (%v): %w", p, cause, err)
	}
	res.recovered = descs
	c.log.Warn("the image cache index was unusable: moved it aside and rebuilt it from the blobs; tags are lost until the images are pulled again",
		"path", p, "movedTo", res.movedTo, "recovered", len(descs), "err", cause)
	return idx, res, nil
}

// moveIndexAside gives index.json a new name, index.json.corrupt-TIME, and
// returns it ("" if there was no index.json). A hard link is tried first,
// so that index.json exists until its replacement is renamed over it; a
// rename is the fallback (for a directory, say). Nothing is ever replaced.
func (c *Cache) moveIndexAside() (string, error) {
	p := c.indexPath()
	base := p + corruptSuffix + c.now().UTC().Format("20060102T150405.000000000Z")
	for i := 0; ; i++ {
		dst := base
		if i > 0 {
			dst += "-" + strconv.Itoa(i)
		}
		err := os.Link(p, dst)
		if err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) {
			err = unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
		}
		switch {
		case err == nil:
			return dst, nil
		case errors.Is(err, fs.ErrNotExist):
			return "", nil
		case !errors.Is(err, fs.ErrExist) || i >= 100:
			return "", fmt.Errorf("moving %s to %s: %w", p, dst, err)
		}
	}
}

// recoverFromBlobs finds the images among the blobs, as described at
// rebuildIndexLocked, sorted by digest.
func (c *Cache) recoverFromBlobs(ctx context.Context) ([]v1.Descriptor, error) {
	dir := c.blobDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	sizes := map[v1.Hash]int64{} // the blobs present
	for _, e := range ents {
		d := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		if !validDigest(d) || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil {
			sizes[d] = fi.Size()
		}
	}
	type node struct {
		desc     v1.Descriptor
		index    bool
		children []v1.Descriptor // an index's manifests; a manifest's config and layers
		state    int             // 0 not yet known, 1 being decided, 2 complete, 3 not
	}
	nodes := map[v1.Hash]*node{}
	for d, size := range sizes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if size == 0 || size > maxManifestSize || !startsLikeJSONObject(filepath.Join(dir, d.Hex)) {
			continue // a layer, most likely
		}
		data, err := c.readBlob(d, false)
		if err != nil {
			continue // corrupt or gone: not a root to trust
		}
		n := &node{desc: v1.Descriptor{MediaType: mediatype.Of("", data), Digest: d, Size: size}}
		switch kindOf(n.desc.MediaType) {
		case kindManifest:
			m, err := v1.ParseManifest(bytes.NewReader(data))
			if err != nil || m.SchemaVersion != 2 || !validDigest(m.Config.Digest) {
				continue // e.g. an image config, which has a "config" too
			}
			n.children = append([]v1.Descriptor{m.Config}, m.Layers...)
		case kindIndex:
			idx, err := v1.ParseIndexManifest(bytes.NewReader(data))
			if err != nil || idx.SchemaVersion != 2 || len(idx.Manifests) == 0 {
				continue
			}
			n.index, n.children = true, idx.Manifests
		default:
			continue
		}
		nodes[d] = n
	}
	// complete reports whether d is a manifest with all its blobs, or an
	// index with at least one complete manifest (or index).
	var complete func(d v1.Hash) bool
	complete = func(d v1.Hash) bool {
		n := nodes[d]
		if n == nil || n.state == 1 {
			return false
		}
		if n.state == 0 {
			n.state = 1
			ok := !n.index
			for _, ch := range n.children {
				if n.index {
					cn := nodes[ch.Digest]
					ok = ok || cn != nil && cn.desc.Size == ch.Size && complete(ch.Digest)
				} else if sz, present := sizes[ch.Digest]; !present || sz != ch.Size {
					ok = false
				}
			}
			n.state = 3
			if ok {
				n.state = 2
			}
		}
		return n.state == 2
	}
	covered := map[v1.Hash]bool{} // reached from a complete index
	for d, n := range nodes {
		if n.index && complete(d) {
			for _, ch := range n.children {
				covered[ch.Digest] = true
			}
		}
	}
	now := c.now().UTC().Format(time.RFC3339)
	var roots []v1.Descriptor
	for d, n := range nodes {
		if complete(d) && !covered[d] {
			desc := n.desc
			desc.Annotations = map[string]string{AnnotationRecovered: now}
			roots = append(roots, desc)
		}
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].Digest.Hex < roots[j].Digest.Hex })
	return roots, nil
}

// startsLikeJSONObject reports whether the first byte of the file p other
// than white space is '{', as in every manifest and index; it keeps the
// recovery from reading small layers whole.
func startsLikeJSONObject(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 512)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	s := strings.TrimLeft(string(buf[:n]), " \t\r\n")
	return strings.HasPrefix(s, "{")
}
