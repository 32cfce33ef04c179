package ociimage

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/man8s/mbctl/internal/testbed/registry"
)

// run runs a command and returns its stdout, failing the test on error.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func TestPushBusyboxApp(t *testing.T) {
	bbPath := StaticBusyboxT(t)
	registry.RequireBinaryT(t, "skopeo")
	registry.RequireBinaryT(t, "umoci")
	reg := registry.StartT(t, registry.Options{})

	// Layer 2 adds files, layer 3 deletes one and makes a directory opaque.
	l2, err := Layer(
		Dir("data", 0o755),
		File("data/keep", []byte("keep"), 0o644),
		File("data/gone", []byte("gone"), 0o644),
		Entry{Path: "data/xattr", Type: 0, Mode: 0o644, Content: []byte("x"), Xattrs: map[string]string{"user.mbctl": "hello"}},
		Dir("opq", 0o755),
		File("opq/old", []byte("old"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	l3, err := Layer(
		Whiteout("data/gone"),
		Dir("opq", 0o755),
		OpaqueDir("opq"),
		File("opq/new", []byte("new"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg := AppConfig{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo hello; sleep 1"},
		Env:        []string{DefaultPath, "GREETING=hello world", "EQ=a=b"},
		WorkingDir: "/data",
		StopSignal: "SIGQUIT",
		Volumes:    []string{"/data", "/var/cache/app"},
		Labels:     map[string]string{"org.opencontainers.image.title": "bbapp"},
	}
	img, err := BusyboxApp(bbPath, cfg, l2, l3)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/test/bbapp:v1"
	digest, err := Push(t.Context(), img, ref)
	if err != nil {
		t.Fatal(err)
	}

	// skopeo reads back the manifest digest and the config.
	var info struct {
		Digest       string
		Architecture string
		Os           string
		Env          []string
		Labels       map[string]string
	}
	if err := json.Unmarshal(run(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref), &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != digest.String() || info.Os != "linux" || info.Architecture == "" {
		t.Errorf("skopeo inspect: digest %s os %s arch %s, want digest %s", info.Digest, info.Os, info.Architecture, digest)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(run(t, "skopeo", "inspect", "--config", "--tls-verify=false", "docker://"+ref), &cf); err != nil {
		t.Fatal(err)
	}
	want := v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        cfg.Env,
		WorkingDir: "/data",
		StopSignal: "SIGQUIT",
		Volumes:    map[string]struct{}{"/data": {}, "/var/cache/app": {}},
		Labels:     cfg.Labels,
	}
	if diff := cmp.Diff(want, cf.Config); diff != "" {
		t.Errorf("config read by skopeo (-want +got):\n%s", diff)
	}

	// skopeo copy + umoci unpack, the reference pipeline.
	work := t.TempDir()
	layout := filepath.Join(work, "layout")
	bundle := filepath.Join(work, "bundle")
	run(t, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":latest")
	umociArgs := []string{"unpack", "--image", layout + ":latest", bundle}
	if os.Geteuid() != 0 {
		umociArgs = append([]string{"--rootless"}, umociArgs...)
	}
	run(t, "umoci", umociArgs...)
	rootfs := filepath.Join(bundle, "rootfs")

	bb, _ := os.ReadFile(bbPath)
	if got, err := os.ReadFile(filepath.Join(rootfs, "bin/busybox")); err != nil || !bytes.Equal(got, bb) {
		t.Errorf("bin/busybox differs (err %v)", err)
	}
	if l, err := os.Readlink(filepath.Join(rootfs, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/os-release")); err != nil || string(b) != OSRelease {
		t.Errorf("etc/os-release: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp: %v, %v", fi, err)
	}
	xa := make([]byte, 64)
	if n, err := syscall.Getxattr(filepath.Join(rootfs, "data/xattr"), "user.mbctl", xa); err != nil || string(xa[:n]) != "hello" {
		t.Errorf("xattr user.mbctl of data/xattr: %q, %v", xa[:max(n, 0)], err)
	}
	for path, exists := range map[string]bool{
		"data/keep": true, "data/gone": false, "data/.wh.gone": false,
		"opq/new": true, "opq/old": false, "opq/.wh..wh..opq": false,
	} {
		_, err := os.Lstat(filepath.Join(rootfs, path))
		if exists && err != nil {
			t.Errorf("%s missing: %v", path, err)
		}
		if !exists && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: want absent, got err %v", path, err)
		}
	}

	// skopeo copy fetched every layer blob exactly once.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		d, _ := l.Digest()
		n, err := reg.CountRequests(http.MethodGet, "/blobs/"+d.String())
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("layer %d (%s): %d blob GETs, want 1", i, d, n)
		}
	}
	if n, err := reg.CountRequests(http.MethodGet, "/blobs/sha256:"); err != nil || n < len(layers)+1 {
		t.Errorf("blob GETs: %d, want at least %d (layers + config); err %v", n, len(layers)+1, err)
	}
}

func TestPushAuthTLS(t *testing.T) {
	registry.RequireBinaryT(t, "htpasswd")
	reg := registry.StartT(t, registry.Options{TLS: true, Htpasswd: map[string]string{"alice": "pa ss:word"}})
	l, err := Layer(File("hello", []byte("hi"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(AppConfig{Cmd: []string{"/hello"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/private/app:latest"

	_, err = Push(t.Context(), img, ref, WithCACert(reg.CACertPath()))
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous push: err = %v, want HTTP 401", err)
	}
	_, err = Push(t.Context(), img, ref, WithCACert(reg.CACertPath()), WithBasicAuth("alice", "wrong"))
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("push with a wrong password: err = %v, want HTTP 401", err)
	}
	if _, err := Push(t.Context(), img, ref, WithBasicAuth("alice", "pa ss:word")); err == nil {
		t.Error("push without the CA succeeded")
	}
	digest, err := Push(t.Context(), img, ref, WithCACert(reg.CACertPath()), WithBasicAuth("alice", "pa ss:word"))
	if err != nil {
		t.Fatalf("push with credentials and CA: %v", err)
	}

	// skopeo agrees, with the CA and the credentials.
	certDir := t.TempDir()
	ca, err := os.ReadFile(reg.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	var info struct{ Digest string }
	out := run(t, "skopeo", "inspect", "--cert-dir", certDir, "--creds", "alice:pa ss:word", "docker://"+ref)
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != digest.String() {
		t.Errorf("skopeo digest %s, pushed %s", info.Digest, digest)
	}
}

func TestPushIndex(t *testing.T) {
	registry.RequireBinaryT(t, "skopeo")
	reg := registry.StartT(t, registry.Options{})
	images := map[string]v1.Image{}
	for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
		l, err := Layer(File("platform", []byte(p), 0o644))
		if err != nil {
			t.Fatal(err)
		}
		img, err := Image(AppConfig{Platform: p, Format: FormatOCI}, l)
		if err != nil {
			t.Fatal(err)
		}
		images[p] = img
	}
	ref := reg.Addr() + "/multi/app:latest"
	digest, err := PushIndex(t.Context(), ref, images)
	if err != nil {
		t.Fatal(err)
	}

	var idx v1.IndexManifest
	if err := json.Unmarshal(run(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref), &idx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range idx.Manifests {
		got = append(got, m.Platform.String()+" "+string(m.MediaType))
		if want, _ := images[m.Platform.String()].Digest(); m.Digest != want {
			t.Errorf("%s: digest %s, want %s", m.Platform, m.Digest, want)
		}
	}
	sort.Strings(got)
	wantList := []string{
		"linux/amd64 application/vnd.oci.image.manifest.v1+json",
		"linux/arm64/v8 application/vnd.oci.image.manifest.v1+json",
	}
	if diff := cmp.Diff(wantList, got); diff != "" || idx.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("index %s (-want +got):\n%s", idx.MediaType, diff)
	}

	// Platform selection through the index: skopeo picks the arm64/v8
	// image's config.
	var cf v1.ConfigFile
	out := run(t, "skopeo", "inspect", "--config", "--tls-verify=false", "--override-arch", "arm64", "--override-variant", "v8", "docker://"+ref)
	if err := json.Unmarshal(out, &cf); err != nil {
		t.Fatal(err)
	}
	wantCF, _ := images["linux/arm64/v8"].ConfigFile()
	if cf.Architecture != "arm64" || cf.Variant != "v8" || !cmp.Equal(cf.RootFS.DiffIDs, wantCF.RootFS.DiffIDs) {
		t.Errorf("arm64 selection: arch %s/%s diff IDs %v, want arm64/v8 %v", cf.Architecture, cf.Variant, cf.RootFS.DiffIDs, wantCF.RootFS.DiffIDs)
	}
	if digest.String() == "" {
		t.Error("PushIndex returned no digest")
	}
	var info struct{ Digest string }
	if err := json.Unmarshal(run(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref), &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != digest.String() {
		t.Errorf("skopeo index digest %s, PushIndex returned %s", info.Digest, digest)
	}

	// A Docker image makes it a Docker manifest list.
	dimg, err := Image(AppConfig{Platform: "linux/386"})
	if err != nil {
		t.Fatal(err)
	}
	images["linux/386"] = dimg
	if _, err := PushIndex(t.Context(), reg.Addr()+"/multi/app:mixed", images); err != nil {
		t.Fatal(err)
	}
	var raw struct{ MediaType string }
	if err := json.Unmarshal(run(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+reg.Addr()+"/multi/app:mixed"), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.MediaType != "application/vnd.docker.distribution.manifest.list.v2+json" {
		t.Errorf("mixed index media type %s", raw.MediaType)
	}
}
