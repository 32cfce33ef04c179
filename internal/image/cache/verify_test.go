package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
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

// testImage is an image written into a cache, with the content of its blobs
// so that a test can "fetch" them again.
type testImage struct {
	ref      string
	config   v1.Descriptor
	layers   []v1.Descriptor
	manifest v1.Descriptor
	data     map[v1.Hash][]byte
}

// putTestImage writes an image with two layers and tags it as ref.
func putTestImage(t *testing.T, c *Cache, ref string) *testImage {
	t.Helper()
	im := &testImage{ref: ref, data: map[v1.Hash][]byte{}}
	put := func(mt types.MediaType, data []byte) v1.Descriptor {
		d := putBlob(t, c, mt, data)
		im.data[d.Digest] = data
		return d
	}
	im.config = put(types.OCIConfigJSON, []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["A=`+ref+`"]},"rootfs":{"type":"layers","diff_ids":[]}}`))
	for i := range 2 {
		im.layers = append(im.layers, put(types.OCILayer, append([]byte(ref), bytes.Repeat([]byte{byte('a' + i)}, 4096*(i+1))...)))
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: im.config, Layers: im.layers}
	im.manifest = put(types.OCIManifestSchema1, mustJSON(t, m))
	if err := c.Tag(ref, im.manifest); err != nil {
		t.Fatal(err)
	}
	return im
}

// fetch simulates a pull fetching blob d again: it stores the original
// content through the cache's write API.
func (im *testImage) fetch(t *testing.T, c *Cache, d v1.Hash) {
	t.Helper()
	stored, err := c.Ensure(t.Context(), d, im.data[d])
	if err != nil {
		t.Fatal(err)
	}
	if !stored {
		t.Errorf("fetching %s again: Ensure stored nothing, want the blob written", d)
	}
}

// snapshot returns the content of every file of the cache but the lock
// files, to show that something changed nothing.
func snapshot(t *testing.T, c *Cache) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(c.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == lockFile || d.Name() == indexLock {
			return err
		}
		data, err := os.ReadFile(p)
		files[p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func digests[T any](items []T, f func(T) v1.Hash) []v1.Hash {
	out := []v1.Hash{}
	for _, it := range items {
		out = append(out, f(it))
	}
	slices.SortFunc(out, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func sorted(ds ...v1.Hash) []v1.Hash {
	out := append([]v1.Hash{}, ds...)
	slices.SortFunc(out, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func badOf(r VerifyReport) []v1.Hash {
	return digests(r.Bad, func(b BadBlob) v1.Hash { return b.Digest })
}

func missingOf(r VerifyReport) []v1.Hash {
	return digests(r.Missing, func(m MissingBlob) v1.Hash { return m.Digest })
}

func verify(t *testing.T, c *Cache, repair bool) VerifyReport {
	t.Helper()
	rep, err := c.Verify(t.Context(), repair)
	if err != nil {
		t.Fatalf("Verify(repair=%v): %v", repair, err)
	}
	return rep
}

func TestVerifyFaults(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, c *Cache, im *testImage)
		// What Verify finds.
		bad     func(im *testImage) []v1.Hash
		missing func(im *testImage) []v1.Hash
		temp    int
		index   bool
		// What is missing after the repair, to be fetched again.
		refetch func(im *testImage) []v1.Hash
	}{
		{
			name: "config byte flipped",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, flipByte(c.Path(im.config.Digest), 10))
			},
			bad:     func(im *testImage) []v1.Hash { return []v1.Hash{im.config.Digest} },
			refetch: func(im *testImage) []v1.Hash { return []v1.Hash{im.config.Digest} },
		},
		{
			name: "manifest byte flipped",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, flipByte(c.Path(im.manifest.Digest), 10))
			},
			bad:     func(im *testImage) []v1.Hash { return []v1.Hash{im.manifest.Digest} },
			refetch: func(im *testImage) []v1.Hash { return []v1.Hash{im.manifest.Digest} },
		},
		{
			name: "layer byte flipped",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, flipByte(c.Path(im.layers[0].Digest), 100))
			},
			bad:     func(im *testImage) []v1.Hash { return []v1.Hash{im.layers[0].Digest} },
			refetch: func(im *testImage) []v1.Hash { return []v1.Hash{im.layers[0].Digest} },
		},
		{
			name: "layer truncated",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, os.Truncate(c.Path(im.layers[1].Digest), 100))
			},
			bad:     func(im *testImage) []v1.Hash { return []v1.Hash{im.layers[1].Digest} },
			refetch: func(im *testImage) []v1.Hash { return []v1.Hash{im.layers[1].Digest} },
		},
		{
			name: "garbage index.json",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, os.WriteFile(c.indexPath(), []byte("\x00garbage{"), 0o644))
			},
			index: true,
		},
		{
			name: "index.json references a missing blob",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, os.Remove(c.Path(im.layers[0].Digest)))
			},
			missing: func(im *testImage) []v1.Hash { return []v1.Hash{im.layers[0].Digest} },
			refetch: func(im *testImage) []v1.Hash { return []v1.Hash{im.layers[0].Digest} },
		},
		{
			name: "temp files",
			damage: func(t *testing.T, c *Cache, im *testImage) {
				must(t, os.WriteFile(filepath.Join(c.blobDir(), tmpPrefix+im.layers[0].Digest.Hex+"-123"), []byte("partial"), 0o600))
				must(t, os.WriteFile(filepath.Join(c.Dir(), "."+indexFile+".tmp456"), []byte("{"), 0o600))
			},
			temp: 2,
		},
	}
	none := func(*testImage) []v1.Hash { return nil }
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []*func(*testImage) []v1.Hash{&tc.bad, &tc.missing, &tc.refetch} {
				if *f == nil {
					*f = none
				}
			}
			c := newCache(t)
			im := putTestImage(t, c, "example.com/app:1")
			other := putTestImage(t, c, "example.com/other:1") // must come through untouched
			if rep := verify(t, c, false); !rep.Clean() || rep.Blobs != 8 {
				t.Fatalf("Verify() of an intact cache = %+v, want clean with 8 blobs", rep)
			}
			tc.damage(t, c, im)

			// Detected, and nothing changed.
			before := snapshot(t, c)
			rep := verify(t, c, false)
			if diff := cmp.Diff(before, snapshot(t, c)); diff != "" {
				t.Errorf("Verify(repair=false) changed the cache (-before +after):\n%s", diff)
			}
			if rep.Clean() {
				t.Error("Verify() reports a clean cache")
			}
			if diff := cmp.Diff(sorted(tc.bad(im)...), badOf(rep)); diff != "" {
				t.Errorf("bad blobs (-want +got):\n%s", diff)
			}
			for _, b := range rep.Bad {
				if b.Removed || !b.Needed || b.Actual == nil || *b.Actual == b.Digest || b.Path != c.Path(b.Digest) {
					t.Errorf("bad blob %+v: want needed, not removed, with its path and actual digest", b)
				}
				if fi, err := os.Stat(b.Path); err != nil || fi.Size() != b.Size {
					t.Errorf("bad blob %s: size %d, file %v %v", b.Digest, b.Size, fi, err)
				}
				if b.ExpectedSize == nil || *b.ExpectedSize != int64(len(im.data[b.Digest])) {
					t.Errorf("bad blob %s: expected size %v, want %d", b.Digest, b.ExpectedSize, len(im.data[b.Digest]))
				}
			}
			if diff := cmp.Diff(sorted(tc.missing(im)...), missingOf(rep)); diff != "" {
				t.Errorf("missing blobs (-want +got):\n%s", diff)
			}
			for _, m := range rep.Missing {
				if !slices.Equal(m.NeededBy, []string{im.ref}) {
					t.Errorf("missing %s needed by %v, want [%s]", m.Digest, m.NeededBy, im.ref)
				}
			}
			if len(rep.TempFiles) != tc.temp {
				t.Errorf("temp files %+v, want %d", rep.TempFiles, tc.temp)
			}
			if (rep.Index != nil) != tc.index {
				t.Errorf("index problem %+v, want one: %v", rep.Index, tc.index)
			}

			// Repaired, and saying so.
			rep = verify(t, c, true)
			for _, b := range rep.Bad {
				if !b.Removed {
					t.Errorf("repair did not remove %s", b.Digest)
				}
			}
			for _, f := range rep.TempFiles {
				if !f.Removed {
					t.Errorf("repair did not remove %s", f.Path)
				}
			}
			if tc.index {
				if rep.Index == nil || !rep.Index.Rebuilt || !strings.Contains(rep.Index.MovedTo, indexFile+corruptSuffix) ||
					!slices.Equal(sorted(rep.Index.Recovered...), sorted(im.manifest.Digest, other.manifest.Digest)) {
					t.Errorf("repaired index %+v, want rebuilt with both images recovered", rep.Index)
				}
			}

			// What is left is what must be fetched again.
			rep = verify(t, c, false)
			if len(rep.Bad) != 0 || len(rep.TempFiles) != 0 || rep.Index != nil {
				t.Errorf("Verify() after the repair = %+v, want no bad or temp files and a good index", rep)
			}
			if diff := cmp.Diff(sorted(tc.refetch(im)...), missingOf(rep)); diff != "" {
				t.Errorf("missing after the repair (-want +got):\n%s", diff)
			}

			// Reading a repaired item finds it gone, and it is fetched again.
			for _, d := range tc.refetch(im) {
				if d == im.manifest.Digest || d == im.config.Digest {
					if _, err := c.ReadBlob(d); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("ReadBlob(%s) after the repair = %v, want not exist", d, err)
					}
				} else if c.Stat(d, int64(len(im.data[d]))) {
					t.Errorf("Stat(%s) after the repair = true", d)
				}
				im.fetch(t, c, d)
			}
			if tc.index {
				// The tags are lost; pulling again tags the image and drops
				// the recovered entry.
				must(t, c.Tag(im.ref, im.manifest))
				must(t, c.Tag(other.ref, other.manifest))
			}
			if rep := verify(t, c, false); !rep.Clean() {
				t.Errorf("Verify() after fetching again = %+v, want clean", rep)
			}
			es, err := c.List()
			if err != nil {
				t.Fatal(err)
			}
			var refs []string
			for _, e := range es {
				refs = append(refs, e.Ref)
			}
			if want := []string{im.ref, other.ref}; !slices.Equal(refs, want) {
				t.Errorf("List() refs = %q, want %q", refs, want)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyUnreadableIndexAndStrays(t *testing.T) {
	c := newCache(t)
	im := putTestImage(t, c, "example.com/app:1")
	must(t, os.Remove(c.indexPath()))
	must(t, os.WriteFile(filepath.Join(c.blobDir(), "not-a-digest"), []byte("x"), 0o644))
	must(t, os.Symlink("/etc/passwd", c.Path(digestOf([]byte("link")))))

	rep := verify(t, c, false)
	if rep.Index == nil || !strings.Contains(rep.Index.Error, "no such file") {
		t.Errorf("index problem %+v, want the missing index.json", rep.Index)
	}
	if !slices.Equal(rep.Unknown, []string{filepath.Join(c.blobDir(), "not-a-digest")}) {
		t.Errorf("unknown = %q", rep.Unknown)
	}
	if len(rep.Bad) != 1 || rep.Bad[0].Digest != digestOf([]byte("link")) || rep.Bad[0].Error != "not a regular file" {
		t.Errorf("bad = %+v, want the symbolic link", rep.Bad)
	}

	rep = verify(t, c, true)
	if rep.Index == nil || !rep.Index.Rebuilt || rep.Index.MovedTo != "" || !slices.Equal(rep.Index.Recovered, []v1.Hash{im.manifest.Digest}) {
		t.Errorf("repaired index %+v, want rebuilt from the blobs, nothing moved", rep.Index)
	}
	if _, err := os.Lstat(c.Path(digestOf([]byte("link")))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("symbolic link not removed: %v", err)
	}
	if rep := verify(t, c, false); !rep.Clean() || len(rep.Unknown) != 1 {
		t.Errorf("Verify() after the repair = %+v, want clean (with the unknown file left)", rep)
	}
}

func TestVerifyReportJSON(t *testing.T) {
	c := newCache(t)
	im := putTestImage(t, c, "example.com/app:1")
	must(t, flipByte(c.Path(im.layers[0].Digest), 1))
	rep := verify(t, c, false)
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	must(t, json.Unmarshal(data, &got))
	for _, k := range []string{"dir", "repair", "blobs", "bytes", "bad", "missing", "temp_files", "unknown", "freed_bytes"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON %s has no %q", data, k)
		}
	}
	for _, k := range []string{"missing", "temp_files", "unknown"} {
		if l, ok := got[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%q = %v, want []", k, got[k])
		}
	}
	bad := got["bad"].([]any)[0].(map[string]any)
	for k, want := range map[string]any{
		"digest": im.layers[0].Digest.String(), "path": c.Path(im.layers[0].Digest), "size": float64(im.layers[0].Size),
		"expected_size": float64(im.layers[0].Size), "needed": true, "removed": false,
	} {
		if bad[k] != want {
			t.Errorf("bad[%q] = %v, want %v", k, bad[k], want)
		}
	}
	if a, _ := bad["actual"].(string); !strings.HasPrefix(a, "sha256:") || a == im.layers[0].Digest.String() {
		t.Errorf("bad.actual = %v", bad["actual"])
	}
	if _, ok := got["index"]; ok {
		t.Error("index problem in the JSON of a cache with a good index.json")
	}
}

func TestVerifyWithConcurrentPull(t *testing.T) {
	c := newCache(t)
	im := putTestImage(t, c, "example.com/app:1")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang fails, it does not time out the run
	defer cancel()

	// A pull: the shared lock, and a blob half written.
	release, err := c.Acquire(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	data := bytes.Repeat([]byte("new layer "), 1000)
	w, err := c.Create(digestOf(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(data[:100]); err != nil {
		t.Fatal(err)
	}

	// Verify without repair runs alongside, and disturbs nothing.
	rep, err := c.Verify(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bad) != 0 || len(rep.Missing) != 0 || rep.Index != nil || len(rep.TempFiles) != 1 || rep.TempFiles[0].Path != w.TempName() || rep.TempFiles[0].Removed {
		t.Errorf("Verify() during a pull = %+v, want only the pull's temp file, kept", rep)
	}

	// Verify with repair waits for the pull.
	waiting := make(chan struct{})
	c.lockWaiting = func() { close(waiting) }
	type result struct {
		rep VerifyReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := c.Verify(ctx, true)
		done <- result{rep, err}
	}()
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("Verify(repair=true) did not wait for the pull: %+v, %v", r.rep, r.err)
	}
	if _, err := w.Write(data[100:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Errorf("the pull's blob: %v", err)
	}
	must(t, c.Tag("example.com/new:1", im.manifest))
	release()
	r := <-done
	if r.err != nil || !r.rep.Clean() || r.rep.Blobs != 5 {
		t.Errorf("Verify(repair=true) after the pull = %+v, %v; want clean with 5 blobs", r.rep, r.err)
	}
	if !c.Stat(digestOf(data), int64(len(data))) {
		t.Error("the pull's blob is gone")
	}
}

func TestVerifyCancelled(t *testing.T) {
	c := newCache(t)
	putTestImage(t, c, "example.com/app:1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Verify(ctx, false); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify(cancelled) = %v, want context.Canceled", err)
	}
}

// syncBuffer is a bytes.Buffer that a logger may write from several
// goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLoggedCache opens a cache whose log goes to the returned buffer.
func newLoggedCache(t *testing.T) (*Cache, *syncBuffer) {
	t.Helper()
	var log syncBuffer
	c, err := OpenWith(filepath.Join(t.TempDir(), "cache"), Options{Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c, &log
}

func TestReadBlobCorruptIsTyped(t *testing.T) {
	c := newCache(t)
	im := putTestImage(t, c, "example.com/app:1")
	for _, d := range []v1.Hash{im.manifest.Digest, im.config.Digest} {
		must(t, flipByte(c.Path(d), 5))
		_, err := c.ReadBlob(d)
		cerr, ok := errors.AsType[*CorruptBlobError](err)
		if !ok || cerr.Digest != d || !cerr.Removed || cerr.Actual == d || !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("ReadBlob(corrupt %s) = %v, want a *CorruptBlobError, removed", d, err)
		}
		// The caller fetches it again.
		im.fetch(t, c, d)
		if got, err := c.ReadBlob(d); err != nil || !bytes.Equal(got, im.data[d]) {
			t.Errorf("ReadBlob(%s) after fetching again = %q, %v", d, got, err)
		}
	}
}

func TestEnsure(t *testing.T) {
	data := []byte(`{"schemaVersion":2,"config":{}}`)
	d := digestOf(data)
	tests := []struct {
		name   string
		damage func(c *Cache) error // nil: the blob is not there
		stored bool
		logged string
	}{
		{name: "absent"},
		{name: "intact", damage: func(*Cache) error { return nil }},
		{name: "byte flipped", damage: func(c *Cache) error { return flipByte(c.Path(d), 3) }, stored: true, logged: "corrupt"},
		{name: "truncated", damage: func(c *Cache) error { return os.Truncate(c.Path(d), 3) }, stored: true, logged: "wrong size"},
		{name: "grown", damage: func(c *Cache) error { return appendTo(c.Path(d), "junk") }, stored: true, logged: "wrong size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, log := newLoggedCache(t)
			stored := true
			if tc.damage != nil {
				putBlob(t, c, "", data)
				must(t, tc.damage(c))
				stored = tc.stored
			}
			got, err := c.Ensure(t.Context(), d, data)
			if err != nil || got != stored {
				t.Errorf("Ensure() = %v, %v; want %v", got, err, stored)
			}
			if b, err := os.ReadFile(c.Path(d)); err != nil || !bytes.Equal(b, data) {
				t.Errorf("blob after Ensure = %q, %v", b, err)
			}
			if !strings.Contains(log.String(), tc.logged) || tc.logged == "" && log.String() != "" {
				t.Errorf("log = %q, want %q", log.String(), tc.logged)
			}
			if tmp := tempFiles(t, c); len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
		})
	}

	c := newCache(t)
	if _, err := c.Ensure(t.Context(), d, []byte("other")); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Ensure(wrong data) = %v, want ErrDigestMismatch", err)
	}
	if _, err := os.Stat(c.Path(d)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Ensure(wrong data) wrote the blob: %v", err)
	}
}
