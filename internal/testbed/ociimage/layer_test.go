package ociimage

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarHeaders reads the uncompressed tar of l.
func tarHeaders(t *testing.T, l v1.Layer) ([]*tar.Header, map[string]string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var hdrs []*tar.Header
	contents := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		contents[h.Name] = string(b)
	}
	return hdrs, contents
}

func TestLayer(t *testing.T) {
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := []Entry{
		Dir("/etc/", 0o755),
		File("/etc/../etc/app.conf", []byte("x=1\n"), 0o640),
		{Path: "etc/caps", Type: tar.TypeReg, Mode: 0o4755, UID: 1000, GID: 100, Content: []byte("c"),
			Xattrs: map[string]string{"user.mbctl": "hello", "security.capability": "\x01\x00"}, ModTime: mtime},
		Symlink("bin/sh", "/bin/busybox"),
		Hardlink("etc/app.hard", "/etc/app.conf"),
		{Path: "dev/null", Type: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Path: "dev/sda", Type: tar.TypeBlock, Mode: 0o660, Devmajor: 8},
		{Path: "run/fifo", Type: tar.TypeFifo, Mode: 0o600},
		Whiteout("/var/lib/gone"),
		OpaqueDir("/opt/app"),
		{Path: "../escape", Content: []byte("evil")}, // verbatim, Type 0 = regular
	}
	l, err := Layer(entries...)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := Layer(entries...)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("same entries, different digests %v and %v", d1, d2)
	}
	if mt, _ := l.MediaType(); mt != types.DockerLayer {
		t.Errorf("media type %s, want %s", mt, types.DockerLayer)
	}

	hdrs, contents := tarHeaders(t, l)
	type row struct {
		Name, Link   string
		Type         byte
		Mode         int64
		UID, GID     int
		Major, Minor int64
		Xattrs       map[string]string
		ModTime      time.Time
		Content      string
	}
	var got []row
	for _, h := range hdrs {
		var xa map[string]string
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if xa == nil {
					xa = map[string]string{}
				}
				xa[name] = v
			}
		}
		got = append(got, row{h.Name, h.Linkname, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Devmajor, h.Devminor, xa, h.ModTime.UTC(), contents[h.Name]})
	}
	def := time.Unix(DefaultModTimeUnix, 0).UTC()
	want := []row{
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755, ModTime: def},
		{Name: "etc/app.conf", Type: tar.TypeReg, Mode: 0o640, ModTime: def, Content: "x=1\n"},
		{Name: "etc/caps", Type: tar.TypeReg, Mode: 0o4755, UID: 1000, GID: 100, ModTime: mtime, Content: "c",
			Xattrs: map[string]string{"user.mbctl": "hello", "security.capability": "\x01\x00"}},
		{Name: "bin/sh", Link: "/bin/busybox", Type: tar.TypeSymlink, Mode: 0o777, ModTime: def},
		{Name: "etc/app.hard", Link: "etc/app.conf", Type: tar.TypeLink, ModTime: def},
		{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3, ModTime: def},
		{Name: "dev/sda", Type: tar.TypeBlock, Mode: 0o660, Major: 8, ModTime: def},
		{Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o600, ModTime: def},
		{Name: "var/lib/.wh.gone", Type: tar.TypeReg, ModTime: def},
		{Name: "opt/app/.wh..wh..opq", Type: tar.TypeReg, ModTime: def},
		{Name: "../escape", Type: tar.TypeReg, ModTime: def, Content: "evil"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer entries mismatch (-want +got):\n%s", diff)
	}
}

func TestLayerRejectsBadEntries(t *testing.T) {
	for _, e := range []Entry{
		{Path: "d", Type: tar.TypeDir, Content: []byte("x")},
		{Path: "x", Type: 'Z'},
	} {
		if _, err := Layer(e); err == nil {
			t.Errorf("Layer(%+v) succeeded", e)
		}
	}
}

func TestImageConfig(t *testing.T) {
	l, err := Layer(File("a", []byte("a"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	cfg := AppConfig{
		Entrypoint:   []string{"/bin/sh", "-c"},
		Cmd:          []string{"echo hi"},
		WorkingDir:   "/app",
		User:         "65534:65534",
		StopSignal:   "SIGQUIT",
		Volumes:      []string{"/data", "/cache"},
		ExposedPorts: []string{"80/tcp"},
		Labels:       map[string]string{"org.example": "yes"},
		Platform:     "linux/arm64/v8",
	}
	for _, tc := range []struct {
		format                    Format
		manifest, config, layerMT types.MediaType
	}{
		{FormatDocker, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
		{FormatOCI, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
	} {
		cfg.Format = tc.format
		img, err := Image(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.MediaType != tc.manifest || m.Config.MediaType != tc.config || len(m.Layers) != 1 || m.Layers[0].MediaType != tc.layerMT {
			t.Errorf("format %d: manifest %s config %s layers %+v", tc.format, m.MediaType, m.Config.MediaType, m.Layers)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want := v1.Config{
			Entrypoint:   cfg.Entrypoint,
			Cmd:          cfg.Cmd,
			Env:          []string{DefaultPath},
			WorkingDir:   "/app",
			User:         "65534:65534",
			StopSignal:   "SIGQUIT",
			Volumes:      map[string]struct{}{"/data": {}, "/cache": {}},
			ExposedPorts: map[string]struct{}{"80/tcp": {}},
			Labels:       map[string]string{"org.example": "yes"},
		}
		if diff := cmp.Diff(want, cf.Config); diff != "" {
			t.Errorf("config mismatch (-want +got):\n%s", diff)
		}
		if cf.OS != "linux" || cf.Architecture != "arm64" || cf.Variant != "v8" {
			t.Errorf("platform %s/%s/%s", cf.OS, cf.Architecture, cf.Variant)
		}
		if len(cf.RootFS.DiffIDs) != 1 || len(cf.History) != 1 {
			t.Errorf("rootfs %+v history %+v", cf.RootFS, cf.History)
		}
		// Deterministic.
		img2, _ := Image(cfg, l)
		d1, _ := img.Digest()
		d2, _ := img2.Digest()
		if d1 != d2 {
			t.Errorf("same input, digests %v and %v", d1, d2)
		}
	}

	cfg = AppConfig{Env: []string{}}
	img, err := Image(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if len(cf.Config.Env) != 0 {
		t.Errorf("Env = %q, want none", cf.Config.Env)
	}
	if _, err := Image(AppConfig{Platform: "linux"}); err == nil {
		t.Error("Image with platform \"linux\" succeeded")
	}
}

func TestRootfs(t *testing.T) {
	bb := StaticBusyboxT(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := Rootfs(dir, bb); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(bb)
	got, err := os.ReadFile(filepath.Join(dir, "bin/busybox"))
	if err != nil || string(got) != string(want) {
		t.Fatalf("bin/busybox differs from %s (err %v)", bb, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode: %v %v", fi.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	for _, f := range []string{"etc/os-release", "etc/passwd", "etc/group", "proc", "sys", "dev", "run", "root", "usr", "var"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// Writing again over an existing tree works.
	if err := Rootfs(dir, bb); err != nil {
		t.Fatalf("second Rootfs: %v", err)
	}
	ci.RequireRoot(t, "the chroot check")
	out, err := exec.CommandContext(t.Context(), "chroot", dir, "/bin/sh", "-c", "echo $(id -un) $(ls /bin/busybox) ok").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "root /bin/busybox ok" {
		t.Errorf("chroot sh: %q, %v", out, err)
	}
}
