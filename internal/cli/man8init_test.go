package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

func TestOCIMan8init(t *testing.T) {
	busybox := ociimage.StaticBusyboxT(t)
	env := noConfig(t, "[machines]\nbusybox = \""+busybox+"\"\n")
	env["MBCTL_INIT"] = busybox // any static executable stands in for the init

	rootfs := t.TempDir()
	code, out, stderr := runCLI(t, env, "oci", "man8init", rootfs)
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	want := "installed /man8s-init/man8s-init from " + busybox + " ($MBCTL_INIT)\n" +
		"installed /man8s-init/busybox from " + busybox + "\n" +
		"linked /bin/sh -> /man8s-init/busybox (the image has no shell)\n" +
		"created /usr, empty: the image has none, and systemd-nspawn refuses a tree without it\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	for _, p := range []string{"man8s-init/man8s-init", "man8s-init/busybox"} {
		if fi, err := os.Stat(filepath.Join(rootfs, p)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}

	if fi, err := os.Stat(filepath.Join(rootfs, "usr")); err != nil || fi.Mode() != os.ModeDir|0o755 {
		t.Errorf("/usr: %v %v, want an empty 0755 dir", fi, err)
	}

	// Again, with --json and the init from the configuration: the shell link
	// and /usr exist already.
	env = noConfig(t, "[machines]\nbusybox = \""+busybox+"\"\ninit = \""+busybox+"\"\n")
	code, out, stderr = runCLI(t, env, "oci", "man8init", "--json", rootfs)
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	var got man8initReport
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	wantReport := man8initReport{Rootfs: rootfs, Init: "/man8s-init/man8s-init", InitSource: busybox, InitFrom: "machines.init",
		Busybox: "/man8s-init/busybox", BusyboxFrom: busybox, ShellLink: false}
	if got != wantReport {
		t.Errorf("JSON = %+v, want %+v", got, wantReport)
	}
}

func TestOCIMan8initErrors(t *testing.T) {
	busybox := ociimage.StaticBusyboxT(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		init string
		args []string
		code int
		msg  string
	}{
		{"no path", busybox, []string{"oci", "man8init"}, 2, "takes 1 argument: PATH"},
		{"missing rootfs", busybox, []string{"oci", "man8init", missing}, 1, missing},
		{"rootfs is a file", busybox, []string{"oci", "man8init", file}, 1, "is not a directory"},
		{"init missing", missing, []string{"oci", "man8init", t.TempDir()}, 1, "configured man8s-init"},
		{"init not static", "/bin/ls", []string{"oci", "man8init", t.TempDir()}, 1, "dynamically linked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := noConfig(t, "")
			env["MBCTL_INIT"] = tt.init
			code, _, stderr := runCLI(t, env, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Errorf("status %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.msg)
			}
		})
	}
}
