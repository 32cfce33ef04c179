package pull

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/pushed"
	testregistry "github.com/man8s/mbctl/internal/testbed/registry"
)

// fixture is an image in a real registry, resolved, and an empty cache.
type fixture struct {
	reg   *testregistry.Registry
	im    *registry.Image
	cache *cache.Cache
	dir   string
}

func newFixture(t *testing.T, img v1.Image) *fixture {
	t.Helper()
	reg := testregistry.StartT(t, testregistry.Options{})
	ref := reg.Addr() + "/pull/test:1"
	if _, err := ociimage.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := cache.Open(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{reg: reg, im: pushed.ResolveT(t, ref), cache: c, dir: dir}
}

func threeLayers(t *testing.T) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for i := range 3 {
		l, err := ociimage.Layer(
			ociimage.Dir("etc", 0o755),
			ociimage.File(fmt.Sprintf("etc/layer%d", i), []byte(strings.Repeat("x", 1<<16*(i+1))), 0o644),
		)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := ociimage.Image(ociimage.AppConfig{}, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (fx *fixture) blobGETs(t *testing.T) int {
	t.Helper()
	n, err := fx.reg.CountRequests("GET", "/blobs/")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDownloadThenWarmCache(t *testing.T) {
	fx := newFixture(t, threeLayers(t))
	dest := filepath.Join(fx.dir, "rootfs")
	res, err := Download(t.Context(), fx.cache, fx.im, dest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Layers != 3 || res.Fetched != 3 || res.Stats.Files != 3 {
		t.Errorf("cold result = %+v, want 3 layers fetched, 3 files", res)
	}
	for i := range 3 {
		if _, err := os.Stat(filepath.Join(dest, "etc", fmt.Sprintf("layer%d", i))); err != nil {
			t.Error(err)
		}
	}
	assertNoStaging(t, fx.dir)

	before := fx.blobGETs(t)
	res, err = Download(t.Context(), fx.cache, fx.im, filepath.Join(fx.dir, "again"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 0 {
		t.Errorf("warm cache fetched %d layers, want 0", res.Fetched)
	}
	if n := fx.blobGETs(t) - before; n != 0 {
		t.Errorf("warm cache made %d blob GETs, want 0", n)
	}
	entries, err := fx.cache.List()
	if err != nil || len(entries) != 1 || entries[0].Digest != fx.im.Digest {
		t.Errorf("cache list = %+v, %v; want the pulled image", entries, err)
	}
}

func TestCorruptCachedBlobIsFetchedAgain(t *testing.T) {
	fx := newFixture(t, threeLayers(t))
	if _, err := Download(t.Context(), fx.cache, fx.im, filepath.Join(fx.dir, "a"), Options{}); err != nil {
		t.Fatal(err)
	}
	l := fx.im.Layers[1]
	path := fx.cache.Path(l.Digest)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff // same size, wrong content
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fx.cache.Path(fx.im.Layers[2].Digest), 10); err != nil {
		t.Fatal(err)
	}
	res, err := Download(t.Context(), fx.cache, fx.im, filepath.Join(fx.dir, "b"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 2 {
		t.Errorf("fetched %d layers, want the corrupt and the truncated one", res.Fetched)
	}
	if err := fx.cache.VerifyBlob(t.Context(), l.Digest, l.Size); err != nil {
		t.Errorf("the blob is still bad after the pull: %v", err)
	}
}

// cancelOn cancels a context at the first event it is told to watch.
type cancelOn struct {
	NopProgress
	cancel   context.CancelFunc
	fetching bool
	applied  bool
	fired    atomic.Bool
}

func (c *cancelOn) Fetching(int, int64) {
	if c.fetching && c.fired.CompareAndSwap(false, true) {
		c.cancel()
	}
}

func (c *cancelOn) Applied(int, unpack.Stats) {
	if c.applied && c.fired.CompareAndSwap(false, true) {
		c.cancel()
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    *cancelOn
	}{
		{"during download", &cancelOn{fetching: true}},
		{"during unpack", &cancelOn{applied: true}},
	} {
		for _, journaled := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/journal=%v", tt.name, journaled), func(t *testing.T) {
				fx := newFixture(t, threeLayers(t))
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				p := &cancelOn{fetching: tt.p.fetching, applied: tt.p.applied, cancel: cancel}
				opts := Options{Progress: p, Jobs: 1}
				if journaled {
					opts.JournalDir = filepath.Join(t.TempDir(), "journals")
				}
				dest := filepath.Join(fx.dir, "rootfs")
				_, err := Download(ctx, fx.cache, fx.im, dest, opts)
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Download = %v, want context.Canceled", err)
				}
				if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists after a cancelled pull", dest)
				}
				assertNoStaging(t, fx.dir)
				if journaled {
					if ents, _ := os.ReadDir(opts.JournalDir); len(ents) != 0 {
						t.Errorf("journal left: %v", ents)
					}
				}
			})
		}
	}
}

func TestDiffIDMismatchFails(t *testing.T) {
	img := threeLayers(t)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, bad)
	dest := filepath.Join(fx.dir, "rootfs")
	_, err = Download(t.Context(), fx.cache, fx.im, dest, Options{})
	if err == nil || !strings.Contains(err.Error(), "diff_ids") {
		t.Fatalf("Download = %v, want a DiffID mismatch", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a failed pull", dest)
	}
	assertNoStaging(t, fx.dir)
}

func TestDownloadRefusesExistingPath(t *testing.T) {
	fx := newFixture(t, threeLayers(t))
	dest := filepath.Join(fx.dir, "exists")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	before := fx.blobGETs(t)
	_, err := Download(t.Context(), fx.cache, fx.im, dest, Options{})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Download = %v, want an 'already exists' error", err)
	}
	if n := fx.blobGETs(t) - before; n != 0 {
		t.Errorf("%d blobs were fetched before refusing", n)
	}
}

func assertNoStaging(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "mbctl-staging") {
			t.Errorf("staging dir %s left behind", e.Name())
		}
	}
}

// A blob the registry serves corrupted is caught, although the applier
// follows the download before it is verified: the pull fails and leaves
// nothing behind, and nothing enters the cache.
func TestCorruptDownloadFails(t *testing.T) {
	fx := newFixture(t, threeLayers(t))
	l := fx.im.Layers[2]
	data := filepath.Join(fx.reg.StorageDir(), "docker/registry/v2/blobs/sha256", l.Digest.Hex[:2], l.Digest.Hex, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(fx.dir, "rootfs")
	if _, err := Download(t.Context(), fx.cache, fx.im, dest, Options{}); err == nil {
		t.Fatal("a corrupt blob was accepted")
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a failed pull", dest)
	}
	assertNoStaging(t, fx.dir)
	if fx.cache.Stat(l.Digest, l.Size) {
		t.Error("the corrupt blob is in the cache")
	}
}

// The lookahead skips what a small next layer deletes; a hard link to a
// skipped file makes the pull start over without skipping. Both give the
// tree that applying every entry gives.
func TestLookahead(t *testing.T) {
	layer := func(entries ...ociimage.Entry) v1.Layer {
		t.Helper()
		l, err := ociimage.Layer(entries...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tt := range []struct {
		name        string
		first       v1.Layer
		wantSkipped bool
		wantFiles   map[string]string
	}{
		{"skips", layer(ociimage.Dir("w", 0o755), ociimage.File("w/a", []byte("a"), 0o644), ociimage.File("keep", []byte("k"), 0o644)),
			true, map[string]string{"keep": "k"}},
		{"starts over", layer(ociimage.Dir("w", 0o755), ociimage.File("w/a", []byte("a"), 0o644), ociimage.Hardlink("b", "w/a")),
			false, map[string]string{"b": "a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ociimage.Image(ociimage.AppConfig{}, tt.first, layer(ociimage.Whiteout("w")))
			if err != nil {
				t.Fatal(err)
			}
			fx := newFixture(t, img)
			// A first pull fills the cache, so that every blob is ready
			// when the layers are applied: the lookahead never waits.
			if _, err := Download(t.Context(), fx.cache, fx.im, filepath.Join(fx.dir, "first"), Options{}); err != nil {
				t.Fatal(err)
			}
			blobs := make([]*blob, len(fx.im.Layers))
			for i, l := range fx.im.Layers {
				blobs[i] = newBlob()
				blobs[i].ready(fx.cache.Path(l.Digest))
			}
			dir := filepath.Join(fx.dir, "rootfs")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			var st unpack.Stats
			if err := applyAll(t.Context(), fx.im, dir, blobs, Options{}.withDefaults(), &st); err != nil {
				t.Fatal(err)
			}
			if got := st.Skipped > 0; got != tt.wantSkipped {
				t.Errorf("%d entries skipped", st.Skipped)
			}
			if _, err := os.Lstat(filepath.Join(dir, "w")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("w: %v, want it deleted", err)
			}
			for p, want := range tt.wantFiles {
				if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", p, b, err, want)
				}
			}
		})
	}
}
