package registry

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// memRegistry starts go-containerregistry's in-memory registry on
// 127.0.0.1, which stores any manifest, and returns its host:port.
func memRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// put uploads img to ref with go-containerregistry directly.
func put(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

// putRaw uploads a raw manifest with the given content type.
func putRaw(t *testing.T, addr, repo, tag, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest: HTTP %d", resp.StatusCode)
	}
}

func TestResolveRejects(t *testing.T) {
	addr := memRegistry(t)
	base := testImage(t, ociimage.AppConfig{Platform: "linux/amd64"}, "base")

	// Unknown layer media type.
	l, err := ociimage.Layer(ociimage.File("x", []byte("x"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	odd, err := mutate.Append(base, mutate.Addendum{Layer: l, MediaType: "application/x-strange-layer"})
	if err != nil {
		t.Fatal(err)
	}
	put(t, addr+"/odd/layer:1", odd)

	// More diff IDs than layers.
	cf, _ := base.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, v1.Hash{Algorithm: "sha256", Hex: hexA})
	bad, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	put(t, addr+"/odd/diffids:1", bad)

	// An artifact, not an image.
	put(t, addr+"/odd/artifact:1", mutate.ConfigMediaType(base, "application/vnd.cncf.helm.config.v1+json"))

	// A single-platform image for another architecture.
	put(t, addr+"/odd/s390x:1", testImage(t, ociimage.AppConfig{Platform: "linux/s390x"}, "s390x"))

	// Schema 1, as labelled and as plain JSON.
	schema1 := []byte(`{"schemaVersion": 1, "name": "odd/schema1", "tag": "1", "architecture": "amd64", "fsLayers": [], "history": []}`)
	putRaw(t, addr, "odd/schema1", "signed", string(types.DockerManifestSchema1Signed), schema1)
	putRaw(t, addr, "odd/schema1", "json", "application/json", schema1)

	amd64 := Options{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}
	tests := []struct {
		ref  string
		want string
	}{
		{"/odd/layer:1", `layer 2 (sha256:`},
		{"/odd/layer:1", `has unsupported media type "application/x-strange-layer"`},
		{"/odd/diffids:1", "is inconsistent: the manifest lists 1 layers but the config has 2 diff IDs"},
		{"/odd/artifact:1", `is not a container image: its config has media type "application/vnd.cncf.helm.config.v1+json"`},
		{"/odd/s390x:1", "no image for linux/amd64 in " + addr + "/odd/s390x:1; available: linux/s390x"},
		{"/odd/schema1:signed", addr + "/odd/schema1:signed: docker schema1 images are not supported; re-push the image with a current docker/skopeo"},
		{"/odd/schema1:json", "docker schema1 images are not supported"},
	}
	for _, tt := range tests {
		_, err := Resolve(t.Context(), mustParse(t, addr+tt.ref), amd64)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v\nwant %q", tt.ref, err, tt.want)
		}
	}

	// The s390x image resolves when asked for.
	if _, err := Resolve(t.Context(), mustParse(t, addr+"/odd/s390x:1"), Options{Platform: v1.Platform{OS: "linux", Architecture: "s390x"}}); err != nil {
		t.Errorf("s390x for s390x: %v", err)
	}
}

func TestResolveForeignAndZstdLayers(t *testing.T) {
	addr := memRegistry(t)
	base := testImage(t, ociimage.AppConfig{Platform: "linux/amd64", Format: ociimage.FormatOCI})
	var adds []mutate.Addendum
	for i, mt := range []types.MediaType{types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCILayerZStd, types.OCIUncompressedLayer} {
		l, err := ociimage.Layer(ociimage.File("f", []byte{byte(i)}, 0o644))
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: mt})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		t.Fatal(err)
	}
	put(t, addr+"/odd/foreign:1", img)
	im, err := Resolve(t.Context(), mustParse(t, addr+"/odd/foreign:1"), Options{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range im.Layers {
		got = append(got, l.Compression)
		readLayer(t, im, l)
	}
	if strings.Join(got, ",") != "gzip,gzip,zstd,none" {
		t.Errorf("compressions %v", got)
	}
}

func TestInspectEmpty(t *testing.T) {
	ref := mustParse(t, "app")
	s := Inspect(&Image{Ref: ref, Config: &v1.ConfigFile{}})
	if s.Reference != "docker.io/library/app:latest" || s.Entrypoint == nil || s.Volumes == nil || s.Labels == nil || s.Layers == nil || s.Platform != "" {
		t.Errorf("summary of an empty image: %+v", s)
	}
	for _, tt := range []struct{ a, b string }{{"80/tcp", "443/tcp"}, {"53/tcp", "53/udp"}, {"8000-8010/tcp", "9000/tcp"}, {"80/tcp", "x/tcp"}} {
		if comparePorts(tt.a, tt.b) >= 0 || comparePorts(tt.b, tt.a) <= 0 {
			t.Errorf("port %s does not sort before %s", tt.a, tt.b)
		}
	}
}
