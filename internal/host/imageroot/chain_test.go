package imageroot

import (
	"os"
	"path/filepath"
	"testing"

	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/loopfs"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/pushed"
	tbregistry "github.com/man8s/mbctl/internal/testbed/registry"
)

// TestChainReuse builds the roots of two versions of an image whose top
// layer alone differs, on btrfs: the second starts from a snapshot of the
// first's kept chain and applies only its own top layer, whose whiteout
// deletes a file of a lower layer; freeing both roots frees the chain.
func TestChainReuse(t *testing.T) {
	testbed.RequireT(t, "docker-registry")
	reg := tbregistry.StartT(t, tbregistry.Options{})
	layer := func(entries ...ociimage.Entry) ggcrv1.Layer {
		l, err := ociimage.Layer(entries...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	base := layer(ociimage.File("usr/bin/app", []byte("app"), 0o755), ociimage.File("etc/old", []byte("old"), 0o644))
	mid := layer(ociimage.File("usr/lib/lib.so", []byte("lib"), 0o644))
	top1 := layer(ociimage.File("usr/share/version", []byte("1"), 0o644))
	top2 := layer(ociimage.File("usr/share/version", []byte("2"), 0o644), ociimage.Whiteout("etc/old"))
	push := func(tag string, layers ...ggcrv1.Layer) *registry.Image {
		img, err := ociimage.Image(ociimage.AppConfig{Entrypoint: []string{"/usr/bin/app"}}, layers...)
		if err != nil {
			t.Fatal(err)
		}
		return pushed.ImageT(t, img, reg.Addr()+"/t/chain:"+tag)
	}
	v1, v2 := push("1", base, mid, top1), push("2", base, mid, top2)

	mnt := loopfs.MountT(t, "btrfs", 256<<20)
	s := Store{Dir: filepath.Join(mnt, ".images")}
	c, err := cache.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(t.TempDir(), "man8s-init")
	if err := os.WriteFile(initBin, []byte("init"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := func(im *registry.Image) Options {
		return Options{Image: im, Ref: "t/chain", Cache: c, Init: initinstall.Sources{Init: initBin}, JournalDir: filepath.Join(t.TempDir(), "j")}
	}
	r1, p1, err := s.Ensure(t.Context(), opts(v1))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Chain == "" || p1.Stats.Files != 4 {
		t.Fatalf("first root: chain %q, %d files applied; want a kept chain and 4 files", r1.Chain, p1.Stats.Files)
	}
	r2, p2, err := s.Ensure(t.Context(), opts(v2))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Chain != r1.Chain || p2.Stats.Files != 1 {
		t.Errorf("second root: chain %q (first %q), %d files applied; want the same chain and only the top layer's file", r2.Chain, r1.Chain, p2.Stats.Files)
	}
	for p, want := range map[string]string{
		"usr/share/version": "2", "usr/lib/lib.so": "lib", "usr/bin/app": "app", "etc/old": "",
	} {
		b, err := os.ReadFile(filepath.Join(r2.Path, p))
		if want == "" {
			if !os.IsNotExist(err) {
				t.Errorf("%s survived its whiteout: %v", p, err)
			}
			continue
		}
		if string(b) != want {
			t.Errorf("%s = %q (%v), want %q", p, b, err, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(r1.Path, "etc/old")); string(b) != "old" {
		t.Errorf("the first root lost etc/old: %q", b)
	}
	if _, err := s.Free(nil, nil); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir, chainsDir)); len(ents) != 0 {
		t.Errorf("chains left after every root was freed: %v", ents)
	}
}
