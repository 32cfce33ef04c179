package e2e

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// trickyLayers exercise every layer feature the unpacker must reproduce:
// whiteouts, opaque dirs, type changes, hardlinks within and across layers,
// symlinks, setuid/setgid/sticky, ownership, xattrs, devices and a FIFO.
func trickyLayers(t *testing.T) []v1.Layer {
	t.Helper()
	long := "opt/" + strings.Repeat("long-directory-name/", 8) + "file-with-a-long-name.txt"
	caps := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	layers := [][]ociimage.Entry{
		{
			ociimage.Dir("etc", 0o755),
			ociimage.File("etc/gone", []byte("deleted by layer 2"), 0o644),
			ociimage.Dir("etc/becomes-file", 0o755),
			ociimage.File("etc/becomes-file/child", []byte("x"), 0o644),
			ociimage.File("etc/becomes-dir", []byte("file first"), 0o644),
			ociimage.Symlink("etc/rel-link", "gone"),
			ociimage.Symlink("abs-link", "/etc/becomes-dir"),
			ociimage.Dir("opt", 0o755),
			ociimage.Dir("opt/keep", 0o755),
			ociimage.File("opt/keep/old", []byte("kept under a dir over a dir"), 0o600),
			ociimage.Dir("opt/opaque", 0o755),
			ociimage.File("opt/opaque/old", []byte("hidden by the opaque dir"), 0o644),
			ociimage.Dir("data", 0o755),
			ociimage.File("data/hl-src", []byte("hardlinked across layers"), 0o640),
			{Path: "usr/bin/suid", Type: tar.TypeReg, Mode: 0o4755, Content: []byte("#!/bin/true\n")},
			{Path: "usr/bin/sgid", Type: tar.TypeReg, Mode: 0o2711, GID: 42, Content: []byte("sgid")},
			{Path: "tmp", Type: tar.TypeDir, Mode: 0o1777},
			{Path: "home/user", Type: tar.TypeDir, Mode: 0o750, UID: 1000, GID: 1000},
			{Path: "home/user/owned", Type: tar.TypeReg, Mode: 0o600, UID: 1000, GID: 100, Content: []byte("mine")},
			{Path: "usr/bin/ping", Type: tar.TypeReg, Mode: 0o755, Content: []byte("cap"), Xattrs: map[string]string{"security.capability": caps}},
			{Path: "etc/xattr", Type: tar.TypeReg, Mode: 0o644, Content: []byte("x"), Xattrs: map[string]string{"user.man8s": "hello", "trusted.man8s": "t"}},
			{Path: "dev/null", Type: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
			{Path: "dev/loop0", Type: tar.TypeBlock, Mode: 0o660, GID: 6, Devmajor: 7, Devminor: 0},
			{Path: "run/fifo", Type: tar.TypeFifo, Mode: 0o600},
		},
		{
			ociimage.Whiteout("etc/gone"),
			ociimage.File("etc/becomes-file", []byte("now a file"), 0o644),
			ociimage.Dir("etc/becomes-dir", 0o711),
			ociimage.File("etc/becomes-dir/inside", []byte("y"), 0o644),
			{Path: "opt/keep/", Type: tar.TypeDir, Mode: 0o700, UID: 5, GID: 5},
			ociimage.File("opt/keep/new", []byte("added"), 0o644),
			ociimage.Dir("opt/opaque", 0o755),
			ociimage.OpaqueDir("opt/opaque"),
			ociimage.File("opt/opaque/new", []byte("same-layer entry survives"), 0o644),
			ociimage.Hardlink("data/hl-dst", "data/hl-src"),
		},
		{
			ociimage.File("data/in-layer", []byte("hardlinked within a layer"), 0o644),
			ociimage.Hardlink("data/in-layer-2", "data/in-layer"),
			ociimage.File(long, []byte("PAX long name"), 0o644),
			ociimage.File("etc/rel-link", []byte("a file replaces a symlink"), 0o644),
		},
	}
	var out []v1.Layer
	for i, entries := range layers {
		l, err := ociimage.Layer(entries...)
		if err != nil {
			t.Fatalf("layer %d: %v", i+1, err)
		}
		out = append(out, l)
	}
	return out
}

// Proof: the same image unpacked by skopeo+umoci (the reference) and by
// mbctl oci download gives identical trees.
func TestDownloadMatchesSkopeoUmoci(t *testing.T) {
	testbed.RequireT(t, "skopeo", "umoci")
	reg := registry.StartT(t, registry.Options{})
	img, err := ociimage.Image(ociimage.AppConfig{Cmd: []string{"/bin/true"}, Format: ociimage.FormatOCI}, trickyLayers(t)...)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/e2e/tricky:1"
	if _, err := ociimage.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()

	// The reference pipeline.
	layout := filepath.Join(work, "layout")
	runCmd(t, "skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":latest")
	bundle := filepath.Join(work, "bundle")
	runCmd(t, "umoci", "unpack", "--image", layout+":latest", bundle)

	// Ours.
	conf := writeConfig(t, work, "")
	rootfs := filepath.Join(work, "rootfs")
	out := runCmd(t, bins.mbctl, "--config", conf, "oci", "download", "--quiet", ref, rootfs)
	if !strings.Contains(out, "e2e/tricky:1@sha256:") {
		t.Errorf("download printed %q, want the reference and digest", out)
	}

	want, err := tree.Snapshot(filepath.Join(bundle, "rootfs"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tree.Snapshot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range tree.Diff(want, got) {
		t.Errorf("umoci vs mbctl: %s", d)
	}
	// Spot checks, so that a bug shared with umoci would still show.
	for path, wantType := range map[string]os.FileMode{
		"/etc/becomes-file": 0, "/etc/becomes-dir": os.ModeDir, "/run/fifo": os.ModeNamedPipe,
		"/dev/null": os.ModeDevice | os.ModeCharDevice, "/opt/opaque/new": 0, "/opt/keep/old": 0,
	} {
		if n, ok := got[path]; !ok || n.Type != wantType {
			t.Errorf("%s: got %+v, want type %v", path, n, wantType)
		}
	}
	for _, path := range []string{"/etc/gone", "/opt/opaque/old", "/etc/becomes-file/child"} {
		if _, ok := got[path]; ok {
			t.Errorf("%s exists, but a later layer removed it", path)
		}
	}
	if n := got["/data/hl-dst"]; len(n.Links) != 2 {
		t.Errorf("/data/hl-dst hardlinks = %v, want the cross-layer pair", n.Links)
	}
	if n := got["/usr/bin/suid"]; n.Mode&os.ModeSetuid == 0 {
		t.Errorf("/usr/bin/suid lost its setuid bit: %v", n.Mode)
	}
	if n := got["/usr/bin/ping"]; n.Xattrs["security.capability"] == "" {
		t.Errorf("/usr/bin/ping lost security.capability: %v", n.Xattrs)
	}
}

// runCmd runs a command and fails the test with its output if it fails.
func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
