package cache

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// blobSet lists the digests of the blobs in the cache.
func blobSet(t *testing.T, c *Cache) []string {
	t.Helper()
	ents, err := os.ReadDir(c.blobDir())
	if err != nil {
		t.Fatal(err)
	}
	var hexes []string
	for _, e := range ents {
		hexes = append(hexes, e.Name())
	}
	sort.Strings(hexes)
	return hexes
}

// hexesOf returns the sorted hex digests of ds.
func hexesOf(ds ...v1.Descriptor) []string {
	seen := map[string]bool{}
	var hexes []string
	for _, d := range ds {
		if !seen[d.Digest.Hex] {
			seen[d.Digest.Hex] = true
			hexes = append(hexes, d.Digest.Hex)
		}
	}
	sort.Strings(hexes)
	return hexes
}

// imageBlobs reads back the descriptors of a manifest's blobs.
func imageBlobs(t *testing.T, c *Cache, md v1.Descriptor) []v1.Descriptor {
	t.Helper()
	data, err := c.ReadBlob(md.Digest)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return append([]v1.Descriptor{md, m.Config}, m.Layers...)
}

func TestPrune(t *testing.T) {
	c := newCache(t)
	shared := []byte("shared layer")
	mdA, _ := putImage(t, c, `{"image":"a"}`, shared, []byte("a only"))
	mdC, _ := putImage(t, c, `{"image":"c"}`, shared, []byte("c only"))
	absent := descOf(types.OCIManifestSchema1, []byte(`{"other":"platform"}`))
	nested := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{mdC}}
	nestedDesc := putBlob(t, c, types.OCIImageIndex, mustJSON(t, nested))
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{nestedDesc, absent}}
	idxDesc := putBlob(t, c, types.OCIImageIndex, mustJSON(t, idx))
	mdGone, _ := putImage(t, c, `{"image":"untagged"}`, []byte("unreferenced layer"))
	loose := putBlob(t, c, types.OCILayer, []byte("loose blob"))
	for ref, d := range map[string]v1.Descriptor{"a": mdA, "idx": idxDesc} {
		if err := c.Tag(ref, d); err != nil {
			t.Fatal(err)
		}
	}
	// Leftovers of killed writers.
	tmps := map[string]string{
		filepath.Join(c.blobDir(), tmpPrefix+loose.Digest.Hex+"-123"): "partial",
		filepath.Join(c.Dir(), ".index.json.tmp456"):                  "{",
	}
	var tmpBytes int64
	for p, s := range tmps {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		tmpBytes += int64(len(s))
	}

	keep := append(imageBlobs(t, c, mdA), imageBlobs(t, c, mdC)...)
	keep = append(keep, nestedDesc, idxDesc)
	removed := append(imageBlobs(t, c, mdGone), loose)
	var removedBytes int64
	for _, d := range removed {
		removedBytes += d.Size
	}

	res, err := c.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := PruneResult{Blobs: len(removed), TempFiles: len(tmps), Bytes: removedBytes + tmpBytes}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Prune() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(hexesOf(keep...), blobSet(t, c)); diff != "" {
		t.Errorf("blobs after Prune (-want +got):\n%s", diff)
	}
	if left := tempFiles(t, c); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}

	// Untagging a then pruning removes a's own blobs but not the shared one.
	untag(t, c, "a")
	res, err = c.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 3 { // a's manifest, config, "a only"
		t.Errorf("second Prune removed %d blobs, want 3", res.Blobs)
	}
	if diff := cmp.Diff(hexesOf(append(imageBlobs(t, c, mdC), nestedDesc, idxDesc)...), blobSet(t, c)); diff != "" {
		t.Errorf("blobs after second Prune (-want +got):\n%s", diff)
	}
}

func TestPruneReportsMissing(t *testing.T) {
	c := newCache(t)
	md, _ := putImage(t, c, "{}", []byte("layer 1"), []byte("layer 2"))
	if err := c.Tag("a", md); err != nil {
		t.Fatal(err)
	}
	blobs := imageBlobs(t, c, md)
	lost := blobs[3] // layer 2
	if err := os.Remove(c.Path(lost.Digest)); err != nil {
		t.Fatal(err)
	}
	res, err := c.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PruneResult{Missing: []v1.Hash{lost.Digest}}, res); diff != "" {
		t.Errorf("Prune() (-want +got):\n%s", diff)
	}
	// A missing manifest: reported, and its blobs are unreferenced now.
	if err := os.Remove(c.Path(md.Digest)); err != nil {
		t.Fatal(err)
	}
	res, err = c.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 2 || len(res.Missing) != 1 || res.Missing[0] != md.Digest {
		t.Errorf("Prune() with the manifest gone = %+v", res)
	}
}

func TestClear(t *testing.T) {
	c := newCache(t)
	md, size := putImage(t, c, "{}", []byte("layer"))
	if err := c.Tag("a", md); err != nil {
		t.Fatal(err)
	}
	putBlob(t, c, "", []byte("loose"))
	res, err := c.Clear(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(PruneResult{Blobs: 4, Bytes: size + 5}, res); diff != "" {
		t.Errorf("Clear() (-want +got):\n%s", diff)
	}
	if got := blobSet(t, c); len(got) != 0 {
		t.Errorf("blobs after Clear: %v", got)
	}
	if es, err := c.List(); err != nil || len(es) != 0 {
		t.Errorf("List() after Clear = %v, %v", es, err)
	}
	for _, f := range []string{"oci-layout", "index.json", "blobs/sha256"} {
		if _, err := os.Stat(filepath.Join(c.Dir(), f)); err != nil {
			t.Errorf("layout damaged: %v", err)
		}
	}

	// Clear resets even an index.json that cannot be read.
	if err := os.WriteFile(c.indexPath(), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if es, err := c.List(); err != nil || len(es) != 0 {
		t.Errorf("List() after Clear of a garbage index.json = %v, %v", es, err)
	}
}

func TestPruneWaitsForPulls(t *testing.T) {
	c := newCache(t)
	release, err := c.Acquire(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := c.Prune(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Prune() during a pull = %v, want it to wait", err)
	}
	if _, err := c.Clear(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Clear() during a pull = %v, want it to wait", err)
	}
}
