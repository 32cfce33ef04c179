package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// corruptCopies returns the index.json files moved aside, sorted.
func corruptCopies(t *testing.T, c *Cache) []string {
	t.Helper()
	got, err := filepath.Glob(filepath.Join(c.Dir(), indexFile+corruptSuffix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

// recoverable fills a cache with what a rebuild must and must not
// recover, and returns the digests it must.
func recoverable(t *testing.T, c *Cache) (complete *testImage, viaIndex v1.Descriptor, incomplete *testImage) {
	t.Helper()
	complete = putTestImage(t, c, "example.com/complete:1")
	incomplete = putTestImage(t, c, "example.com/incomplete:1")
	must(t, os.Remove(c.Path(incomplete.layers[1].Digest)))
	// An index of which one platform is pulled: listed, and not the
	// manifest it holds.
	platform := putTestImage(t, c, "example.com/multi:1")
	untag(t, c, platform.ref)
	absent := descOf(types.OCIManifestSchema1, []byte(`{"not":"here"}`))
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{platform.manifest, absent}}
	viaIndex = putBlob(t, c, types.OCIImageIndex, mustJSON(t, idx))
	// Things that look like manifests but are not.
	putBlob(t, c, "", []byte(`{"schemaVersion":2,"config":{"digest":"nonsense"}}`))
	putBlob(t, c, "", []byte(`{"schemaVersion":2,"manifests":[]}`))
	putBlob(t, c, "", []byte(`  {"truncated":`))
	return complete, viaIndex, incomplete
}

func TestIndexRebuiltOnUse(t *testing.T) {
	contents := []struct{ name, data string }{
		{"garbage", "\x1f\x8bnot json at all"},
		{"truncated", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","dig`},
		{"empty", ""},
		{"not an index", `{"hello":"world"}`},
		{"bad digest", `{"schemaVersion":2,"manifests":[{"digest":"sha256:xyz","size":1}]}`},
	}
	ops := []struct {
		name string
		run  func(c *Cache, im *testImage) error
	}{
		{"Tag", func(c *Cache, im *testImage) error { return c.Tag("example.com/new:1", im.manifest) }},
		{"List", func(c *Cache, _ *testImage) error { _, err := c.List(); return err }},
		{"Prune", func(c *Cache, _ *testImage) error { _, err := c.Prune(context.Background()); return err }},
	}
	for _, content := range contents {
		for _, op := range ops {
			t.Run(content.name+"/"+op.name, func(t *testing.T) {
				c, log := newLoggedCache(t)
				clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
				c.now = clk.now
				complete, viaIndex, incomplete := recoverable(t, c)
				must(t, os.WriteFile(c.indexPath(), []byte(content.data), 0o644))

				if err := op.run(c, complete); err != nil {
					t.Fatalf("%s with a bad index.json: %v", op.name, err)
				}
				if got := corruptCopies(t, c); len(got) != 1 || filepath.Base(got[0]) != "index.json.corrupt-20260102T030405.000000006Z" {
					t.Errorf("moved aside: %q", got)
				} else if data, _ := os.ReadFile(got[0]); string(data) != content.data {
					t.Errorf("the copy moved aside holds %q, want %q", data, content.data)
				}
				if !strings.Contains(log.String(), "rebuilt it from the blobs") {
					t.Errorf("log = %q, want the rebuild reported", log.String())
				}
				idx, err := c.loadIndex()
				if err != nil {
					t.Fatal(err)
				}
				type entry struct {
					Ref, Recovered string
					Digest         v1.Hash
				}
				var got []entry
				for _, m := range idx.Manifests {
					got = append(got, entry{refOf(m), m.Annotations[AnnotationRecovered], m.Digest})
				}
				when := clk.t.Format(time.RFC3339)
				want := []entry{{"", when, complete.manifest.Digest}, {"", when, viaIndex.Digest}}
				if op.name == "Tag" {
					want = []entry{{"", when, viaIndex.Digest}, {"example.com/new:1", "", complete.manifest.Digest}}
				}
				sortEntries := func(es []entry) {
					slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.Ref+a.Digest.Hex, b.Ref+b.Digest.Hex) })
				}
				sortEntries(got)
				sortEntries(want)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("rebuilt index (-want +got):\n%s", diff)
				}
				if op.name == "Prune" {
					// What was recovered keeps its blobs; the incomplete
					// image, not recovered, loses them.
					for _, d := range append(complete.layers, complete.config, complete.manifest, viaIndex) {
						if !c.Stat(d.Digest, d.Size) {
							t.Errorf("Prune deleted %s of a recovered image", d.Digest)
						}
					}
					if c.Stat(incomplete.manifest.Digest, -1) {
						t.Error("Prune kept the manifest of the incomplete image")
					}
				}
				if rep := verify(t, c, false); rep.Index != nil || len(rep.Missing) != 0 {
					t.Errorf("Verify() after the rebuild = %+v", rep)
				}

				// Again, at the same time: the first copy is not replaced.
				must(t, os.WriteFile(c.indexPath(), []byte("again"), 0o644))
				if _, err := c.List(); err != nil {
					t.Fatal(err)
				}
				if got := corruptCopies(t, c); len(got) != 2 || !strings.HasSuffix(got[1], "Z-1") {
					t.Errorf("moved aside: %q, want a second copy with -1", got)
				}
			})
		}
	}
}

func TestIndexRebuildEmpty(t *testing.T) {
	// Nothing to recover: an empty index.
	c := newCache(t)
	putBlob(t, c, types.OCILayer, []byte("a lone layer"))
	must(t, os.WriteFile(c.indexPath(), []byte("garbage"), 0o644))
	es, err := c.List()
	if err != nil || len(es) != 0 {
		t.Errorf("List() = %v, %v; want no entries", es, err)
	}
	if data, _ := os.ReadFile(c.indexPath()); string(data) != string(emptyIndexJSON()) {
		t.Errorf("index.json = %s, want the empty index", data)
	}
}

func TestIndexRebuildConcurrentTags(t *testing.T) {
	c := newCache(t)
	im := putTestImage(t, c, "example.com/app:1")
	must(t, os.WriteFile(c.indexPath(), []byte("garbage"), 0o644))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() { errs <- c.Tag(fmt.Sprintf("example.com/g:%d", i), im.manifest) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	es, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, e := range es {
		refs = append(refs, e.Ref)
	}
	var want []string
	for i := range 8 {
		want = append(want, fmt.Sprintf("example.com/g:%d", i))
	}
	if !slices.Equal(refs, want) {
		t.Errorf("refs %q, want %q (a tag lost, or the recovered entry kept)", refs, want)
	}
	if got := corruptCopies(t, c); len(got) != 1 {
		t.Errorf("moved aside %q, want one copy: the index was rebuilt more than once", got)
	}
}

func TestIndexRebuildConcurrentTagProcesses(t *testing.T) {
	c := newCache(t)
	md, _ := putImage(t, c, "{}", []byte("layer"))
	must(t, os.WriteFile(c.indexPath(), []byte("garbage"), 0o644))
	var cmds []interface{ Wait() error }
	for _, p := range []string{"p1", "p2"} {
		cmd := helper(t, "tag", c.Dir(), fmt.Sprintf("%s %s %d", p, md.Digest, md.Size))
		must(t, cmd.Start())
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
	es, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 81 {
		t.Errorf("%d entries, want 40+40+1", len(es))
	}
	if got := corruptCopies(t, c); len(got) != 1 {
		t.Errorf("moved aside %q, want one copy", got)
	}
}
