//go:build installed

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// This file exists only in the package run (go test -tags installed, by
// scripts/ci-package.sh after it installed the .deb), so no other run
// skips it.

// installedInit is where the package puts man8s-init, and where the
// installed mbctl must find it by itself (<dir of mbctl>/../lib/man8s).
const installedInit = "/usr/lib/man8s/man8s-init"

// Proof (issue 17): the packaged binaries work as installed: mbctl
// version, host check --json, and a machine pulled from a registry and run,
// with the man8s-init the package installed.
func TestInstalledPackage(t *testing.T) {
	bin := os.Getenv("MBCTL_INSTALLED")
	if bin == "" {
		t.Fatal("MBCTL_INSTALLED must name the installed mbctl (/usr/bin/mbctl): scripts/ci-package.sh sets it")
	}
	if !filepath.IsAbs(bin) || strings.HasPrefix(bin, bins.dir) {
		t.Fatalf("MBCTL_INSTALLED=%s is not an installed binary", bin)
	}
	for _, p := range []string{bin, installedInit} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the package's file: %v", err)
		}
	}
	testbed.RequireT(t, "systemd-nspawn", "nsenter", "unshare", busybox)
	m := &machineHost{Host: testbed.NewHostT(t, testbed.Options{}), work: t.TempDir()}
	mb, err := testbed.NewMbctl(m.Host, bin, m.work, "")
	if err != nil {
		t.Fatal(err)
	}
	m.mb = mb

	if v := m.mustMbctl(t, "version"); !strings.HasPrefix(v, "mbctl ") {
		t.Errorf("mbctl version = %q", v)
	}

	// The testbed host has what a machine needs (bridge, networkd,
	// yggdrasil), so every check passes, as after `mbctl host setup`.
	out, err := m.mbctl(t.Context(), "host", "check", "--json").Output()
	var report struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name, Status, Detail, Fix string
		} `json:"checks"`
	}
	if jerr := json.Unmarshal(out, &report); jerr != nil || len(report.Checks) == 0 {
		t.Fatalf("host check --json: %v, %v\n%s", err, jerr, out)
	}
	for _, c := range report.Checks {
		t.Logf("host check: %s %s: %s", c.Status, c.Name, c.Detail)
		if c.Status == "fail" {
			t.Errorf("host check: %s failed: %s (fix: %s)", c.Name, c.Detail, c.Fix)
		}
	}
	if !report.OK || err != nil {
		t.Errorf("host check --json: ok=%v, %v", report.OK, err)
	}

	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/installed:1"
	app, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "-c", "echo installed app up as $(id -u); trap 'exit 0' TERM; while true; do sleep 0.1; done"},
		Env:        []string{ociimage.DefaultPath},
	})
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, app, ref)
	pull := m.mustMbctl(t, "machines", "pull", "-v", "--quiet", "--no-probe", ref, "pkg1")
	if !strings.Contains(pull, "path="+installedInit) {
		t.Errorf("the installed mbctl did not take the package's man8s-init (%s):\n%s", installedInit, pull)
	}
	run := m.startRun(t, "pkg1")
	waitForOutput(t, run, "installed app up as 0")
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}
	m.mustMbctl(t, "machines", "remove", "--yes", "pkg1")
}
