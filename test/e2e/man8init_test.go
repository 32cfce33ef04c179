package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
)

// distroless makes a rootfs like a distroless image's: no /bin, no shell.
func distroless(t *testing.T) string {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"usr", "etc", "proc", "sys", "dev", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(rootfs, "etc/os-release"), "ID=distroless\n", 0o644)
	return rootfs
}

// runMan8init runs `mbctl oci man8init --json` with the mbctl binary at
// mbctl and returns its report.
func runMan8init(t *testing.T, mbctl, conf, rootfs string) map[string]any {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), mbctl, "--config", conf, "oci", "man8init", "--json", rootfs)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MBCTL_INIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mbctl oci man8init: %v\n%s", err, stderr.String())
	}
	var report map[string]any
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return report
}

// nspawn runs argv in rootfs under systemd-nspawn and returns the output.
func nspawn(t *testing.T, rootfs, name string, extra []string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append([]string{"--quiet", "--register=no", "--keep-unit", "-M", name, "-D", rootfs, "--private-network"}, extra...)
	out, err := stopGently(exec.CommandContext(ctx, "systemd-nspawn", append(args, argv...)...)).CombinedOutput()
	return string(out), err
}

// Proof (issue 3): `oci man8init` on a distroless-style rootfs installs the
// init and busybox and links /bin/sh to it; the shell works in the machine.
func TestMan8initDistroless(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	rootfs := distroless(t)
	conf := writeConfig(t, t.TempDir(), "[machines]\nbusybox = \""+busybox+"\"\n")
	report := runMan8init(t, bins.mbctl, conf, rootfs)
	want := map[string]any{
		"rootfs": rootfs, "init": "/man8s-init/man8s-init", "init_source": filepath.Join(bins.dir, "man8s-init"),
		"init_from": "beside mbctl", "busybox": "/man8s-init/busybox", "busybox_source": busybox, "shell_link": true,
	}
	for k, v := range want {
		if report[k] != v {
			t.Errorf("report %s = %v, want %v", k, report[k], v)
		}
	}
	out, err := nspawn(t, rootfs, "m8i-distroless", nil, "/bin/sh", "-c", "echo shell $((40+2)) ok")
	if err != nil || !strings.Contains(out, "shell 42 ok") {
		t.Errorf("/bin/sh in the machine: %v\n%s", err, out)
	}
	out, err = nspawn(t, rootfs, "m8i-distroless", nil, "/man8s-init/man8s-init", "--version")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "man8s-init ") {
		t.Errorf("man8s-init --version in the machine: %v\n%s", err, out)
	}

	// A second install replaces both files and leaves the link alone.
	report = runMan8init(t, bins.mbctl, conf, rootfs)
	if report["shell_link"] != false {
		t.Errorf("second install: shell_link = %v, want false", report["shell_link"])
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "bin/sh")); err != nil || target != "/man8s-init/busybox" {
		t.Errorf("/bin/sh -> %q, %v", target, err)
	}
}

// Proof (issue 3): an mbctl without man8s-init beside it installs itself,
// and the copy runs as man8s-init in the machine: it answers --version and
// starts a distroless app.
func TestMan8initMultiCall(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	alone := filepath.Join(t.TempDir(), "bin", "mbctl")
	data, err := os.ReadFile(bins.mbctlStatic)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, alone, string(data), 0o755)
	rootfs := distroless(t)
	conf := writeConfig(t, t.TempDir(), "[machines]\nbusybox = \""+busybox+"\"\n")
	report := runMan8init(t, alone, conf, rootfs)
	if report["init_from"] != "multi-call mbctl" || report["init_source"] != alone {
		t.Fatalf("report = %v, want the init from the multi-call mbctl %s", report, alone)
	}
	out, err := nspawn(t, rootfs, "m8i-multicall", nil, "/man8s-init/man8s-init", "--version")
	if err != nil || !strings.Contains(out, "man8s-init") || !strings.Contains(out, "multi-call mbctl") {
		t.Errorf("installed mbctl as man8s-init --version: %v\n%s", err, out)
	}

	writeFile(t, filepath.Join(rootfs, "man8env.env"), "MAN8S_APPLICATION_ARGS=/man8s-init/busybox sh -c 'echo \"app ran: $0\"; exit 3' 'as pid 3'\n", 0o644)
	out, err = nspawn(t, rootfs, "m8i-multicall", []string{"--as-pid2"}, "/man8s-init/man8s-init")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(out, "app ran: as pid 3") {
		t.Errorf("machine with the multi-call init ended with %v, want status 3 and the app's output\n%s", err, out)
	}
}
