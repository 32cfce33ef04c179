package pull

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/testbed/faultproxy"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	testregistry "github.com/man8s/mbctl/internal/testbed/registry"
)

// bigSize is the size of the incompressible file in faultImage's middle
// layer.
const bigSize = 2 << 20

// faultImage has a small layer, a big incompressible one and a small one,
// and returns the big file's content.
func faultImage(t *testing.T) (v1.Image, []byte) {
	t.Helper()
	big := make([]byte, bigSize)
	_, _ = rand.NewChaCha8([32]byte{'p', 'u', 'l', 'l'}).Read(big)
	var layers []v1.Layer
	for _, e := range [][]ociimage.Entry{
		{ociimage.File("small1", []byte("one"), 0o644)},
		{ociimage.File("big", big, 0o644)},
		{ociimage.File("small2", []byte("two"), 0o644)},
	} {
		l, err := ociimage.Layer(e...)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := ociimage.Image(ociimage.AppConfig{}, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img, big
}

// faultFixture is an image in a real registry behind a fault proxy,
// resolved through the proxy with short timeouts, and an empty cache.
type faultFixture struct {
	proxy *faultproxy.Proxy
	im    *registry.Image
	cache *cache.Cache
	dir   string
	big   []byte
	// blob is the path part that selects the big layer's blob.
	blob string
}

func newFaultFixture(t *testing.T, attempts int) *faultFixture {
	t.Helper()
	img, big := faultImage(t)
	reg := testregistry.StartT(t, testregistry.Options{})
	if _, err := ociimage.Push(t.Context(), img, reg.Addr()+"/pull/fault:1"); err != nil {
		t.Fatal(err)
	}
	p := faultproxy.StartT(t, reg.Addr())
	r, err := registry.ParseReference(p.Addr() + "/pull/fault:1")
	if err != nil {
		t.Fatal(err)
	}
	im, err := registry.Resolve(t.Context(), r, registry.Options{
		BlobAttempts:          attempts,
		RetryDelay:            10 * time.Millisecond,
		IdleTimeout:           time.Second,
		ResponseHeaderTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := cache.Open(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return &faultFixture{proxy: p, im: im, cache: c, dir: dir, big: big, blob: "/blobs/" + im.Layers[1].Digest.String()}
}

// download runs Download under a deadline, so that a hang fails the test.
func (fx *faultFixture) download(t *testing.T, dest string) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return Download(ctx, fx.cache, fx.im, dest, Options{})
}

// A pull whose biggest layer is cut off or stalls once in the middle
// completes; the blob is resumed, not fetched again: the proxy served
// each of its bytes about once.
func TestDownloadResumes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rules []faultproxy.Rule
		// slack is how many bytes more than the blob may be served.
		slack int64
	}{
		{"cut", []faultproxy.Rule{{Fault: faultproxy.Cut, After: bigSize / 3, Times: 1}}, 0},
		{"cut three times", []faultproxy.Rule{{Fault: faultproxy.Cut, After: bigSize / 5, Times: 3}}, 0},
		{"stall", []faultproxy.Rule{{Fault: faultproxy.Stall, After: bigSize / 2, Times: 1}}, 0},
		{"cut, Range ignored", []faultproxy.Rule{{Fault: faultproxy.IgnoreRange}, {Fault: faultproxy.Cut, After: bigSize / 3, Times: 1}}, bigSize / 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFaultFixture(t, 0)
			for _, r := range tt.rules {
				r.Path = fx.blob
				fx.proxy.Add(r)
			}
			dest := filepath.Join(fx.dir, "rootfs")
			res, err := fx.download(t, dest)
			if err != nil {
				t.Fatal(err)
			}
			if res.Fetched != 3 {
				t.Errorf("fetched %d layers, want 3", res.Fetched)
			}
			if b, err := os.ReadFile(filepath.Join(dest, "big")); err != nil || !bytes.Equal(b, fx.big) {
				t.Errorf("big file: %d bytes, %v; want its content", len(b), err)
			}
			size := fx.im.Layers[1].Size
			served := fx.proxy.Served(fx.blob)
			t.Logf("blob of %d bytes: %d bytes served in %d requests", size, served, len(fx.proxy.Requests(fx.blob)))
			// The margin: at most 64 KiB, for a response in flight
			// when a connection breaks.
			if limit := size + tt.slack + 64<<10; served > limit {
				t.Errorf("%d bytes served for a blob of %d, want at most %d", served, size, limit)
			}
			if err := fx.cache.VerifyBlob(t.Context(), fx.im.Layers[1].Digest, size); err != nil {
				t.Errorf("cached blob: %v", err)
			}
		})
	}
}

// A layer that fails on every attempt fails the pull after the configured
// attempts, with a message that says so and names the registry and the
// blob; nothing is left behind and the broken blob is not cached.
func TestDownloadGivesUp(t *testing.T) {
	fx := newFaultFixture(t, 2)
	fx.proxy.Add(faultproxy.Rule{Path: fx.blob, Fault: faultproxy.Stall, After: 1000})
	dest := filepath.Join(fx.dir, "rootfs")
	_, err := fx.download(t, dest)
	if err == nil {
		t.Fatal("the pull succeeded")
	}
	t.Logf("error: %v", err)
	l := fx.im.Layers[1]
	for _, want := range []string{
		"fetching layer 2/3 " + l.Digest.String(),
		"registry " + fx.proxy.Addr() + ": no data for 1s while downloading layer sha256:" + l.Digest.Hex[:12] + "…",
		"gave up after 2 attempts",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("the test's deadline ended the pull, not the attempts")
	}
	if n := len(fx.proxy.Requests(fx.blob)); n != 2 {
		t.Errorf("%d requests for the blob, want 2", n)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a failed pull", dest)
	}
	assertNoStaging(t, fx.dir)
	if fx.cache.Stat(l.Digest, l.Size) {
		t.Error("the unfinished blob is in the cache")
	}
}
