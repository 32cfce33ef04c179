package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// markedImage is a one-layer image whose /marker file says which it is.
func markedImage(t *testing.T, marker, platform string) v1.Image {
	t.Helper()
	l, err := ociimage.Layer(ociimage.File("marker", []byte(marker), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(ociimage.AppConfig{Cmd: []string{"/marker"}, Platform: platform}, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// randomImage is an image of n layers, each one file of size random
// (incompressible) bytes, so that blobs stay as large as asked.
func randomImage(t *testing.T, n, size int) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for i := range n {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(i)}).Read(data)
		l, err := ociimage.Layer(ociimage.File(fmt.Sprintf("blob%d", i), data, 0o644))
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

// mbctlCmd runs the built mbctl with the given config and environment.
func mbctlCmd(t *testing.T, conf string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bins.mbctl, append([]string{"--config", conf}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readMarker(t *testing.T, rootfs string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rootfs, "marker"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Proof: a registry with htpasswd auth and TLS; credentials from a docker
// config.json (and from REGISTRY_AUTH_FILE), the CA from the configuration.
func TestDownloadWithAuthAndTLS(t *testing.T) {
	reg := registry.StartT(t, registry.Options{Htpasswd: map[string]string{"man8": "s3cret"}, TLS: true})
	ref := reg.Addr() + "/private/app:1"
	if _, err := ociimage.Push(t.Context(), markedImage(t, "private", ""), ref,
		ociimage.WithBasicAuth("man8", "s3cret"), ociimage.WithCACert(reg.CACertPath())); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	conf := writeConfig(t, work, fmt.Sprintf("[registries]\nca_file = %q\n", reg.CACertPath()))
	home := filepath.Join(work, "home")
	noCreds := []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(work, "none"), "REGISTRY_AUTH_FILE=", "XDG_RUNTIME_DIR=" + work}

	out, err := mbctlCmd(t, conf, noCreds, "oci", "download", ref, filepath.Join(work, "anon"))
	if err == nil || !strings.Contains(out, "docker login") {
		t.Errorf("anonymous download: err %v, output %q; want a 401 with a login hint", err, out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("the error shows the password: %q", out)
	}

	auth := base64.StdEncoding.EncodeToString([]byte("man8:s3cret"))
	authJSON := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr(), auth)
	dockerDir := filepath.Join(work, "docker")
	writeFile(t, filepath.Join(dockerDir, "config.json"), authJSON, 0o600)
	out, err = mbctlCmd(t, conf, append(noCreds, "DOCKER_CONFIG="+dockerDir), "oci", "download", ref, filepath.Join(work, "docker-rootfs"))
	if err != nil {
		t.Fatalf("download with docker config.json: %v\n%s", err, out)
	}
	if got := readMarker(t, filepath.Join(work, "docker-rootfs")); got != "private" {
		t.Errorf("marker = %q", got)
	}

	authFile := filepath.Join(work, "auth.json")
	writeFile(t, authFile, authJSON, 0o600)
	out, err = mbctlCmd(t, conf, append(noCreds, "REGISTRY_AUTH_FILE="+authFile), "oci", "download", ref, filepath.Join(work, "podman-rootfs"))
	if err != nil {
		t.Fatalf("download with REGISTRY_AUTH_FILE: %v\n%s", err, out)
	}
}

// Proof: a multi-platform index gives this host's platform by default and
// another one on request; an unknown one is an error listing the choices.
func TestDownloadPicksPlatform(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/multi/app:1"
	if _, err := ociimage.PushIndex(t.Context(), ref, map[string]v1.Image{
		"linux/amd64":    markedImage(t, "amd64", "linux/amd64"),
		"linux/arm64/v8": markedImage(t, "arm64", "linux/arm64/v8"),
	}); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	conf := writeConfig(t, work, "")
	if out, err := mbctlCmd(t, conf, nil, "oci", "download", ref, filepath.Join(work, "host")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := readMarker(t, filepath.Join(work, "host")); got != "amd64" {
		t.Errorf("default platform gave %q, want amd64 (this host)", got)
	}
	if out, err := mbctlCmd(t, conf, nil, "oci", "download", "--platform", "linux/arm64", ref, filepath.Join(work, "arm")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := readMarker(t, filepath.Join(work, "arm")); got != "arm64" {
		t.Errorf("--platform linux/arm64 gave %q", got)
	}
	out, err := mbctlCmd(t, conf, nil, "oci", "download", "--platform", "linux/s390x", ref, filepath.Join(work, "none"))
	if err == nil || !strings.Contains(out, "linux/arm64/v8") || !strings.Contains(out, "linux/amd64") {
		t.Errorf("unknown platform: err %v, output %q; want the available platforms", err, out)
	}
}

// Proof: a configured mirror serves the image; the origin is not asked.
func TestDownloadUsesMirror(t *testing.T) {
	origin := registry.StartT(t, registry.Options{})
	mirror := registry.StartT(t, registry.Options{})
	const repo = "/library/app:1"
	for _, r := range []struct {
		reg    *registry.Registry
		marker string
	}{{origin, "origin"}, {mirror, "mirror"}} {
		if _, err := ociimage.Push(t.Context(), markedImage(t, r.marker, ""), r.reg.Addr()+repo); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	conf := writeConfig(t, work, fmt.Sprintf("[registries.mirrors]\n%q = [%q]\n", origin.Addr(), mirror.URL()))
	before, err := origin.CountRequests("", "/v2/library/")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := mbctlCmd(t, conf, nil, "oci", "download", origin.Addr()+repo, filepath.Join(work, "rootfs")); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := readMarker(t, filepath.Join(work, "rootfs")); got != "mirror" {
		t.Errorf("content came from %q, want the mirror", got)
	}
	if after, _ := origin.CountRequests("", "/v2/library/"); after != before {
		t.Errorf("the origin got %d requests for the image, want 0", after-before)
	}
}

// Proof: SIGINT during a download leaves nothing at PATH and no staging
// dir. The image is served through a proxy (configured as a mirror) that
// stalls every blob after its first MiB, so the interrupt always lands
// mid-download.
func TestDownloadInterruptedLeavesNothing(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/big/app:1"
	if _, err := ociimage.Push(t.Context(), randomImage(t, 1, 8<<20), ref); err != nil {
		t.Fatal(err)
	}
	stalled := make(chan struct{}, 1)
	proxy := stallingProxy(t, reg.URL(), stalled, 1<<20)

	work := t.TempDir()
	conf := writeConfig(t, work, fmt.Sprintf("[registries.mirrors]\n%q = [%q]\n", reg.Addr(), proxy))
	dest := filepath.Join(work, "rootfs")
	cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "oci", "download", ref, dest)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatalf("the download never reached a blob\n%s", out.String())
	}
	if !hasStaging(t, work) {
		t.Fatal("no staging dir during the download")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the interrupted download succeeded\n%s", out.String())
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Errorf("%s exists after an interrupted download", dest)
	}
	if hasStaging(t, work) {
		t.Error("the staging dir was left behind")
	}
	if tmp, _ := filepath.Glob(filepath.Join(work, "cache", "blobs", "sha256", ".tmp-*")); len(tmp) > 0 {
		t.Errorf("partial blobs left in the cache: %v", tmp)
	}
}

// stallingProxy forwards to target and stalls the body of each blob larger
// than minSize after 1 MiB until the test ends, signalling stalled the
// first time.
func stallingProxy(t *testing.T, target string, stalled chan<- struct{}, minSize int64) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	done := make(chan struct{})
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Request.URL.Path, "/blobs/") && resp.Request.Method == http.MethodGet && resp.ContentLength > minSize {
			resp.Body = &stallReader{r: resp.Body, left: 1 << 20, done: done, stalled: stalled}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL
}

type stallReader struct {
	r       io.ReadCloser
	left    int
	done    <-chan struct{}
	stalled chan<- struct{}
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		select {
		case s.stalled <- struct{}{}:
		default:
		}
		<-s.done
		return 0, io.ErrUnexpectedEOF
	}
	p = p[:min(len(p), s.left)]
	n, err := s.r.Read(p)
	s.left -= n
	return n, err
}

func (s *stallReader) Close() error { return s.r.Close() }

func hasStaging(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "mbctl-staging") {
			return true
		}
	}
	return false
}

// Proof: two mbctl processes pulling the same image into one cache at once
// both succeed, and the cache holds the image once, intact.
func TestConcurrentDownloadsShareTheCache(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/shared/app:1"
	if _, err := ociimage.Push(t.Context(), randomImage(t, 4, 4<<20), ref); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	conf := writeConfig(t, work, "")
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := range 2 {
		cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "oci", "download", "--quiet", ref, filepath.Join(work, fmt.Sprintf("rootfs%d", i)))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("download %d: %v\n%s", i, err, outs[i])
		}
	}
	out, err := mbctlCmd(t, conf, nil, "cache", "list", "--json")
	if err != nil || strings.Count(out, `"ref"`) != 1 {
		t.Errorf("cache list: %v\n%s", err, out)
	}
	if tmp, _ := filepath.Glob(filepath.Join(work, "cache", "blobs", "sha256", ".tmp-*")); len(tmp) > 0 {
		t.Errorf("temp blobs left: %v", tmp)
	}
	// The cached blobs are intact: a third pull fetches nothing and
	// unpacks the same content.
	if out, err := mbctlCmd(t, conf, nil, "oci", "download", ref, filepath.Join(work, "rootfs-warm")); err != nil || !strings.Contains(out, "0 downloaded") {
		t.Errorf("warm download: %v\n%s", err, out)
	}
	a, _ := tree.Snapshot(filepath.Join(work, "rootfs0"))
	b, _ := tree.Snapshot(filepath.Join(work, "rootfs-warm"))
	for _, d := range tree.Diff(a, b) {
		t.Error(d)
	}
}
