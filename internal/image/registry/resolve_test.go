package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

func TestResolve(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	cfg := ociimage.AppConfig{
		Entrypoint:   []string{"/bin/app", "--serve"},
		Cmd:          []string{"--port", "8080"},
		Env:          []string{ociimage.DefaultPath, "A=b=c"},
		WorkingDir:   "/app",
		User:         "1000:1000",
		StopSignal:   "SIGQUIT",
		Volumes:      []string{"/var/cache/app", "/data"},
		ExposedPorts: []string{"8080/tcp", "53/udp", "443/tcp"},
		Labels:       map[string]string{"org.opencontainers.image.title": "app"},
		Platform:     "linux/" + runtime.GOARCH,
	}
	for _, tt := range []struct {
		format    ociimage.Format
		manifest  types.MediaType
		layerType types.MediaType
	}{
		{ociimage.FormatDocker, types.DockerManifestSchema2, types.DockerLayer},
		{ociimage.FormatOCI, types.OCIManifestSchema1, types.OCILayer},
	} {
		t.Run(string(tt.manifest), func(t *testing.T) {
			cfg := cfg
			cfg.Format = tt.format
			tag := map[ociimage.Format]string{ociimage.FormatDocker: "docker", ociimage.FormatOCI: "oci"}[tt.format]
			img := testImage(t, cfg, "first layer of "+tag, "second layer of "+tag)
			digest, err := ociimage.Push(t.Context(), img, reg.Addr()+"/test/app:"+tag)
			if err != nil {
				t.Fatal(err)
			}
			log, _ := testLogger(t)
			im, err := Resolve(t.Context(), mustParse(t, reg.Addr()+"/test/app:"+tag), Options{Log: log})
			if err != nil {
				t.Fatal(err)
			}
			if im.Digest != digest || im.IndexDigest != nil || im.MediaType != tt.manifest || im.Source != reg.Addr() {
				t.Errorf("digest %s index %v type %s source %s; want %s, nil, %s, %s", im.Digest, im.IndexDigest, im.MediaType, im.Source, digest, tt.manifest, reg.Addr())
			}
			rawManifest, _ := img.RawManifest()
			rawConfig, _ := img.RawConfigFile()
			if !bytes.Equal(im.RawManifest, rawManifest) || !bytes.Equal(im.RawConfig, rawConfig) {
				t.Error("raw manifest or config differ from what was pushed")
			}
			if diff := cmp.Diff(cfg.Cmd, im.Config.Config.Cmd); diff != "" {
				t.Errorf("config cmd (-want +got):\n%s", diff)
			}

			layers, _ := img.Layers()
			cf, _ := img.ConfigFile()
			if len(im.Layers) != len(layers) {
				t.Fatalf("%d layers, want %d", len(im.Layers), len(layers))
			}
			var total int64
			for i, l := range layers {
				d, _ := l.Digest()
				size, _ := l.Size()
				want := Layer{Digest: d, DiffID: cf.RootFS.DiffIDs[i], Size: size, MediaType: tt.layerType, Compression: CompressionGzip}
				if im.Layers[i] != want {
					t.Errorf("layer %d = %+v, want %+v", i, im.Layers[i], want)
				}
				total += size
				rc, _ := l.Compressed()
				wantBytes, _ := io.ReadAll(rc)
				rc.Close()
				if got := readLayer(t, im, im.Layers[i]); !bytes.Equal(got, wantBytes) {
					t.Errorf("layer %d: streamed bytes differ from the pushed blob", i)
				}
				// Fetched once: verification does not fetch again.
				if n, err := reg.CountRequests(http.MethodGet, "/blobs/"+d.String()); err != nil || n != 1 {
					t.Errorf("layer %d: %d blob GETs (err %v), want 1", i, n, err)
				}
			}

			want := Summary{
				Reference:    reg.Addr() + "/test/app:" + tag,
				Source:       reg.Addr(),
				Digest:       digest.String(),
				MediaType:    string(tt.manifest),
				Platform:     "linux/" + runtime.GOARCH,
				OS:           "linux",
				Architecture: runtime.GOARCH,
				Created:      time.Unix(ociimage.DefaultModTimeUnix, 0).UTC(),
				Entrypoint:   cfg.Entrypoint,
				Cmd:          cfg.Cmd,
				Env:          cfg.Env,
				WorkingDir:   "/app",
				User:         "1000:1000",
				StopSignal:   "SIGQUIT",
				Volumes:      []string{"/data", "/var/cache/app"},
				ExposedPorts: []string{"53/udp", "443/tcp", "8080/tcp"},
				Labels:       cfg.Labels,
				TotalSize:    total,
			}
			for _, l := range im.Layers {
				want.Layers = append(want.Layers, LayerSummary{Digest: l.Digest.String(), Size: l.Size, MediaType: string(tt.layerType)})
			}
			if diff := cmp.Diff(want, Inspect(im)); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenLayerVerifies(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	img := testImage(t, ociimage.AppConfig{}, "content that will be corrupted")
	if _, err := ociimage.Push(t.Context(), img, reg.Addr()+"/test/corrupt:v1"); err != nil {
		t.Fatal(err)
	}
	im, err := Resolve(t.Context(), mustParse(t, reg.Addr()+"/test/corrupt:v1"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := im.Layers[0]

	if _, err := im.OpenLayer(t.Context(), Layer{Digest: v1.Hash{Algorithm: "sha256", Hex: hexA}}); err == nil || !strings.Contains(err.Error(), "not a layer of") {
		t.Errorf("OpenLayer of a foreign digest: %v", err)
	}

	// Flip one byte of the stored blob: same size, wrong digest.
	data := filepath.Join(reg.StorageDir(), "docker/registry/v2/blobs/sha256", l.Digest.Hex[:2], l.Digest.Hex, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := im.OpenLayer(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if err == nil || !strings.Contains(err.Error(), l.Digest.String()) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("reading a corrupted layer: %v, want a checksum error naming %s", err, l.Digest)
	}
}

func TestResolveTagAndDigest(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	img1 := testImage(t, ociimage.AppConfig{}, "one")
	img2 := testImage(t, ociimage.AppConfig{}, "two")
	d1, err := ociimage.Push(t.Context(), img1, reg.Addr()+"/test/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociimage.Push(t.Context(), img2, reg.Addr()+"/test/app:v2"); err != nil {
		t.Fatal(err)
	}

	// The tag says v2, the digest is v1's: the digest wins, the tag is displayed.
	ref := mustParse(t, reg.Addr()+"/test/app:v2@"+d1.String())
	im, err := Resolve(t.Context(), ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if im.Digest != d1 {
		t.Errorf("resolved %s, want %s", im.Digest, d1)
	}
	if got, want := DisplayName(im.Ref), reg.Addr()+"/test/app:v2@"+d1.String(); got != want {
		t.Errorf("DisplayName %q, want %q", got, want)
	}
	if n, err := reg.CountRequests(http.MethodGet, "/manifests/v2"); err != nil || n != 0 {
		t.Errorf("%d requests for tag v2 (err %v), want 0", n, err)
	}
	if n, err := reg.CountRequests(http.MethodGet, "/manifests/"+d1.String()); err != nil || n != 1 {
		t.Errorf("%d GETs of the manifest by digest (err %v), want 1", n, err)
	}

	// A digest the registry does not have.
	_, err = Resolve(t.Context(), mustParse(t, reg.Addr()+"/test/app:v1@sha256:"+hexA), Options{})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not found (repository or tag does not exist, or you lack access)") {
		t.Errorf("unknown digest: %v", err)
	}
}

func TestResolveIndex(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	images := map[string]v1.Image{}
	digests := map[string]v1.Hash{}
	for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
		img := testImage(t, ociimage.AppConfig{Platform: p, Format: ociimage.FormatOCI}, "for "+p)
		images[p] = img
		digests[p], _ = img.Digest()
	}
	ref := mustParse(t, reg.Addr()+"/multi/app:latest")
	indexDigest, err := ociimage.PushIndex(t.Context(), ref.Name(), images)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		platform v1.Platform
		want     string
	}{
		{v1.Platform{OS: "linux", Architecture: "amd64"}, "linux/amd64"},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "linux/arm64/v8"},
		{v1.Platform{OS: "linux", Architecture: "arm64"}, "linux/arm64/v8"},
		{v1.Platform{Architecture: "aarch64"}, "linux/arm64/v8"},
	}
	if _, ok := images["linux/"+runtime.GOARCH]; ok {
		tests = append(tests, struct {
			platform v1.Platform
			want     string
		}{v1.Platform{}, "linux/" + map[string]string{"arm64": "arm64/v8"}[runtime.GOARCH]})
		if runtime.GOARCH == "amd64" {
			tests[len(tests)-1].want = "linux/amd64"
		}
	}
	for _, tt := range tests {
		t.Run(tt.want+"/"+platformString(tt.platform), func(t *testing.T) {
			im, err := Resolve(t.Context(), ref, Options{Platform: tt.platform})
			if err != nil {
				t.Fatal(err)
			}
			if im.Digest != digests[tt.want] || im.IndexDigest == nil || *im.IndexDigest != indexDigest {
				t.Errorf("digest %s index %v, want %s via %s", im.Digest, im.IndexDigest, digests[tt.want], indexDigest)
			}
			if got := platformString(normalizePlatform(v1.Platform{OS: im.Config.OS, Architecture: im.Config.Architecture, Variant: im.Config.Variant})); got != tt.want {
				t.Errorf("config platform %s, want %s", got, tt.want)
			}
			if s := Inspect(im); s.IndexDigest != indexDigest.String() || s.Digest != digests[tt.want].String() {
				t.Errorf("summary digests %s / %s", s.Digest, s.IndexDigest)
			}
			readLayer(t, im, im.Layers[0])
		})
	}

	_, err = Resolve(t.Context(), ref, Options{Platform: v1.Platform{OS: "linux", Architecture: "s390x"}})
	want := "no image for linux/s390x in " + reg.Addr() + "/multi/app:latest; available: linux/amd64, linux/arm64/v8"
	if err == nil || err.Error() != want {
		t.Errorf("s390x: %v\nwant: %s", err, want)
	}
}

// isolateAuth points every credential location at empty temporary
// directories and returns the docker config directory.
func isolateAuth(t *testing.T) (home, dockerConfig string) {
	t.Helper()
	home = t.TempDir()
	dockerConfig = filepath.Join(home, "docker")
	if err := os.Mkdir(dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(home, "run"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	return home, dockerConfig
}

func TestResolveAuthTLS(t *testing.T) {
	registry.RequireBinaryT(t, "htpasswd")
	const user, password = "alice", "pa ss:w0rd-secret"
	reg := registry.StartT(t, registry.Options{TLS: true, Htpasswd: map[string]string{user: password}})
	img := testImage(t, ociimage.AppConfig{}, "private")
	ref := mustParse(t, reg.Addr()+"/private/app:v1")
	digest, err := ociimage.Push(t.Context(), img, ref.Name(), ociimage.WithCACert(reg.CACertPath()), ociimage.WithBasicAuth(user, password))
	if err != nil {
		t.Fatal(err)
	}
	home, dockerConfig := isolateAuth(t)
	ca := reg.CACertPath()
	authJSON := func(pass string) []byte {
		return []byte(`{"auths": {"` + reg.Addr() + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}}}`)
	}
	noSecret := func(t *testing.T, err error) {
		t.Helper()
		if err != nil && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "w0rd")) {
			t.Errorf("error leaks the password: %v", err)
		}
	}

	t.Run("anonymous", func(t *testing.T) {
		_, err := Resolve(t.Context(), ref, Options{CAFile: ca})
		want := `authentication required for ` + reg.Addr() + ` (HTTP 401): log in with "docker login ` + reg.Addr() + `" or "podman login ` + reg.Addr() + `", or set REGISTRY_AUTH_FILE`
		if !errors.Is(err, ErrUnauthorized) || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	})
	t.Run("no CA", func(t *testing.T) {
		t.Setenv("SSL_CERT_FILE", "")
		_, err := Resolve(t.Context(), ref, Options{})
		if err == nil || !strings.Contains(err.Error(), "TLS verification of "+reg.Addr()+" failed") || !strings.Contains(err.Error(), "registries.ca_file") {
			t.Errorf("got %v, want a TLS error with the ca_file hint", err)
		}
	})
	t.Run("docker config.json", func(t *testing.T) {
		cfg := filepath.Join(dockerConfig, "config.json")
		if err := os.WriteFile(cfg, authJSON(password), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(cfg)
		im, err := Resolve(t.Context(), ref, Options{CAFile: ca})
		if err != nil {
			t.Fatal(err)
		}
		if im.Digest != digest {
			t.Errorf("digest %s, want %s", im.Digest, digest)
		}
		readLayer(t, im, im.Layers[0])
	})
	t.Run("wrong password", func(t *testing.T) {
		cfg := filepath.Join(dockerConfig, "config.json")
		if err := os.WriteFile(cfg, authJSON("wrong-"+password), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(cfg)
		_, err := Resolve(t.Context(), ref, Options{CAFile: ca})
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "authentication failed for "+reg.Addr()+" (HTTP 401): the registry rejected the stored credentials") {
			t.Errorf("got %v", err)
		}
		noSecret(t, err)
	})
	t.Run("REGISTRY_AUTH_FILE", func(t *testing.T) {
		p := filepath.Join(home, "auth.json")
		if err := os.WriteFile(p, authJSON(password), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("REGISTRY_AUTH_FILE", p)
		im, err := Resolve(t.Context(), ref, Options{CAFile: ca})
		if err != nil {
			t.Fatal(err)
		}
		readLayer(t, im, im.Layers[0])
	})
	t.Run("SSL_CERT_FILE and insecure", func(t *testing.T) {
		p := filepath.Join(home, "auth.json")
		if err := os.WriteFile(p, authJSON(password), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("REGISTRY_AUTH_FILE", p)
		t.Setenv("SSL_CERT_FILE", ca)
		if _, err := Resolve(t.Context(), ref, Options{}); err != nil {
			t.Errorf("CA in SSL_CERT_FILE: %v", err)
		}
		t.Setenv("SSL_CERT_FILE", "")
		if _, err := Resolve(t.Context(), ref, Options{Insecure: []string{reg.Addr()}}); err != nil {
			t.Errorf("listed as insecure: %v", err)
		}
	})
}

func TestResolveMirror(t *testing.T) {
	origin := registry.StartT(t, registry.Options{})
	mirror := registry.StartT(t, registry.Options{})
	img := testImage(t, ociimage.AppConfig{}, "mirrored layer")
	ref := mustParse(t, origin.Addr()+"/team/app:v1")
	for _, r := range []*registry.Registry{origin, mirror} {
		if _, err := ociimage.Push(t.Context(), img, r.Addr()+"/team/app:v1"); err != nil {
			t.Fatal(err)
		}
	}
	before, err := origin.CountRequests("", "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	im, err := Resolve(t.Context(), ref, Options{
		Mirrors: map[string][]string{origin.Addr(): {"http://" + mirror.Addr()}},
		Log:     log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if im.Source != "http://"+mirror.Addr() {
		t.Errorf("source %q, want the mirror", im.Source)
	}
	if DisplayName(im.Ref) != origin.Addr()+"/team/app:v1" {
		t.Errorf("ref %s, want the origin's", DisplayName(im.Ref))
	}
	readLayer(t, im, im.Layers[0])

	if after, err := origin.CountRequests("", "/v2/"); err != nil || after != before {
		t.Errorf("origin got %d requests during resolve (err %v), want none", after-before, err)
	}
	for what, path := range map[string]string{
		"manifest": "/v2/team/app/manifests/v1",
		"config":   "/v2/team/app/blobs/" + im.Manifest.Config.Digest.String(),
		"layer":    "/v2/team/app/blobs/" + im.Layers[0].Digest.String(),
	} {
		if n, err := mirror.CountRequests(http.MethodGet, path); err != nil || n != 1 {
			t.Errorf("mirror %s GETs: %d (err %v), want 1", what, n, err)
		}
	}
}

func TestResolveMirrorFallback(t *testing.T) {
	origin := registry.StartT(t, registry.Options{})
	empty := registry.StartT(t, registry.Options{})
	dead := closedPort(t)
	img := testImage(t, ociimage.AppConfig{}, "origin layer")
	digest, err := ociimage.Push(t.Context(), img, origin.Addr()+"/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Mirrors: map[string][]string{origin.Addr(): {"http://" + dead, "http://" + empty.Addr()}}}
	log, logs := testLogger(t)
	opts.Log = log

	im, err := Resolve(t.Context(), mustParse(t, origin.Addr()+"/team/app:v1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if im.Source != origin.Addr() || im.Digest != digest {
		t.Errorf("source %s digest %s, want %s %s", im.Source, im.Digest, origin.Addr(), digest)
	}
	readLayer(t, im, im.Layers[0])
	if n, err := empty.CountRequests(http.MethodGet, "/v2/team/app/manifests/v1"); err != nil || n != 1 {
		t.Errorf("empty mirror manifest GETs: %d (err %v), want 1", n, err)
	}
	if n, err := origin.CountRequests(http.MethodGet, "/blobs/"+im.Layers[0].Digest.String()); err != nil || n != 1 {
		t.Errorf("origin layer GETs: %d (err %v), want 1", n, err)
	}
	for _, m := range []string{"http://" + dead, "http://" + empty.Addr()} {
		if !strings.Contains(logs.String(), "mirror="+m) {
			t.Errorf("no warning about mirror %s in the log", m)
		}
	}

	// Nobody has it: the origin's error, with the mirrors named.
	_, err = Resolve(t.Context(), mustParse(t, origin.Addr()+"/team/missing:v1"), opts)
	if !errors.Is(err, ErrNotFound) ||
		!strings.Contains(err.Error(), "image "+origin.Addr()+"/team/missing:v1 not found") ||
		!strings.Contains(err.Error(), "mirrors tried first: http://"+dead+", http://"+empty.Addr()) {
		t.Errorf("missing everywhere: %v", err)
	}
}

func TestResolveCanceled(t *testing.T) {
	origin := registry.StartT(t, registry.Options{})
	empty := registry.StartT(t, registry.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Resolve(ctx, mustParse(t, origin.Addr()+"/team/app:v1"), Options{Mirrors: map[string][]string{origin.Addr(): {"http://" + empty.Addr()}}})
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "mirrors tried") {
		t.Errorf("canceled: %v", err)
	}
	if n, err := origin.CountRequests("", "/v2/team"); err != nil || n != 0 {
		t.Errorf("origin asked %d times after cancel (err %v)", n, err)
	}
}

func TestResolveConnectionRefused(t *testing.T) {
	addr := closedPort(t)
	_, err := Resolve(t.Context(), mustParse(t, addr+"/app:v1"), Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot connect to "+addr+": connection refused") {
		t.Errorf("got %v", err)
	}
}
