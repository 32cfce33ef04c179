package cache

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// clock is a fake time source for the cache.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestTagTouchUntag(t *testing.T) {
	c := newCache(t)
	clk := &clock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
	c.now = clk.now
	md, _ := putImage(t, c, `{"a":1}`, []byte("layer a"))
	md2, _ := putImage(t, c, `{"b":2}`, []byte("layer b"))
	const ref = "docker.io/library/registry:latest"

	md.Annotations = map[string]string{"org.example": "kept"}
	if err := c.Tag(ref, md); err != nil {
		t.Fatal(err)
	}
	if md.Annotations[AnnotationRefName] != "" {
		t.Error("Tag changed the caller's annotations")
	}
	got := lookup(t, c, ref)
	want := md
	want.Annotations = map[string]string{
		"org.example":      "kept",
		AnnotationRefName:  ref,
		AnnotationPulled:   "2025-03-01T10:00:00Z",
		AnnotationLastUsed: "2025-03-01T10:00:00Z",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entry after Tag (-want +got):\n%s", diff)
	}

	// Pulled again, same digest: last used moves, pulled stays.
	clk.t = clk.t.Add(time.Hour)
	if err := c.Tag(ref, md); err != nil {
		t.Fatal(err)
	}
	es, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || !es[0].LastUsed.Equal(clk.t) || !es[0].Pulled.Equal(clk.t.Add(-time.Hour)) {
		t.Errorf("after a second pull: %+v", es)
	}

	// Tagging the same ref with another digest replaces the entry, pulled
	// time included.
	clk.t = clk.t.Add(time.Hour)
	if err := c.Tag(ref, md2); err != nil {
		t.Fatal(err)
	}
	if err := c.Tag("example.com/other:1", md); err != nil {
		t.Fatal(err)
	}
	es, err = c.List()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, e := range es {
		refs = append(refs, e.Ref+"@"+e.Digest.String())
	}
	wantRefs := []string{ref + "@" + md2.Digest.String(), "example.com/other:1@" + md.Digest.String()}
	if diff := cmp.Diff(wantRefs, refs); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	if e := es[0]; !e.Pulled.Equal(clk.t) || !e.LastUsed.Equal(clk.t) {
		t.Errorf("retagged entry: %+v, want pulled and last used now", e)
	}
}

func TestTagRejects(t *testing.T) {
	c := newCache(t)
	md, _ := putImage(t, c, "{}")
	absent := descOf(types.OCIManifestSchema1, []byte("not written"))
	wrongSize := md
	wrongSize.Size++
	for _, tc := range []struct {
		name string
		ref  string
		desc v1.Descriptor
	}{
		{name: "empty ref", ref: "", desc: md},
		{name: "manifest not in cache", ref: "a/b:c", desc: absent},
		{name: "wrong size", ref: "a/b:c", desc: wrongSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Tag(tc.ref, tc.desc); err == nil {
				t.Error("Tag() succeeded")
			}
		})
	}
	if es, _ := c.List(); len(es) != 0 {
		t.Errorf("index has entries: %+v", es)
	}
	if !c.Stat(md.Digest, md.Size) {
		t.Error("Tag with a wrong size deleted the good manifest")
	}
}

func TestListSizes(t *testing.T) {
	c := newCache(t)
	shared := []byte(strings.Repeat("shared base layer ", 100))
	mdA, sizeA := putImage(t, c, `{"os":"linux","architecture":"amd64"}`, shared, []byte("app amd64"))
	mdB, sizeB := putImage(t, c, `{"os":"linux","architecture":"arm64"}`, shared, []byte("app arm64"))
	// A platform that was not pulled: in the index, not in the cache.
	absent := descOf(types.OCIManifestSchema1, []byte(`{"not":"pulled"}`))
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex,
		Manifests: []v1.Descriptor{mdA, mdB, absent}}
	idxDesc := putBlob(t, c, types.OCIImageIndex, mustJSON(t, idx))
	// The same image tagged without a media type is sniffed.
	noType := mdA
	noType.MediaType = ""

	for ref, d := range map[string]v1.Descriptor{"a": mdA, "index": idxDesc, "notype": noType} {
		if err := c.Tag(ref, d); err != nil {
			t.Fatal(err)
		}
	}
	es, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, e := range es {
		got[e.Ref] = e.Size
	}
	want := map[string]int64{
		"a":      sizeA,
		"index":  idxDesc.Size + sizeA + sizeB - int64(len(shared)), // shared layer once
		"notype": sizeA,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if es[1].MediaType != types.OCIImageIndex {
		t.Errorf("index entry media type %q", es[1].MediaType)
	}
}

func TestConcurrentTagProcesses(t *testing.T) {
	c := newCache(t)
	md, _ := putImage(t, c, "{}", []byte("layer"))
	var cmds []interface{ Wait() error }
	for _, p := range []string{"p1", "p2"} {
		cmd := helper(t, "tag", c.Dir(), fmt.Sprintf("%s %s %d", p, md.Digest, md.Size))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// Read index.json while they write: it is always valid.
	done := make(chan struct{})
	go func() {
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("helper: %v", err)
			}
		}
		close(done)
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		data, err := os.ReadFile(c.indexPath())
		if err != nil {
			t.Fatal(err)
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatalf("index.json invalid during concurrent Tag: %v\n%s", err, data)
		}
	}
	es, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]int{}
	for _, e := range es {
		refs[e.Ref]++
	}
	if len(es) != 81 || refs["example.com/shared:latest"] != 1 {
		t.Errorf("got %d entries (%d for the shared ref), want 40+40+1 (1); %d reads", len(es), refs["example.com/shared:latest"], reads)
	}
	for _, p := range []string{"p1", "p2"} {
		for i := range 40 {
			if ref := fmt.Sprintf("example.com/%s:%d", p, i); refs[ref] != 1 {
				t.Errorf("%s: %d entries, want 1 (lost update?)", ref, refs[ref])
			}
		}
	}
	if tmp := tempFiles(t, c); len(tmp) > 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}
