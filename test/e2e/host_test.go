package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
)

// mbctlIn runs mbctl with args inside the testbed host and returns its
// exit status and combined output.
func mbctlIn(t *testing.T, h *testbed.Host, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return exitAndOutput(t, h.Command(ctx, bins.mbctl, args...), args)
}

// exitAndOutput runs cmd (mbctl with args) and returns its exit status
// and combined output; a failure to run it at all ends the test.
func exitAndOutput(t *testing.T, cmd *exec.Cmd, args []string) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), string(out)
	}
	t.Fatalf("mbctl %s: %v\n%s", strings.Join(args, " "), err, out)
	return 0, ""
}

// checkLine returns the line of `host check` output about name.
func checkLine(out, name string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if len(line) > 4 && strings.HasPrefix(line[strings.Index(line, " ")+1:], name+":") {
			return line
		}
	}
	return ""
}

// A host whose networkd runs without the bridge: `host check` says the
// bridge is missing and how to fix it; `host setup` writes the files into
// the networkd dir and reloads that networkd through its bus, which creates
// the bridge with the ygg gateway and the ULA; `host check` then passes;
// a second `host setup` changes nothing.
func TestHostSetupThenCheck(t *testing.T) {
	testbed.RequireT(t, "dbus-daemon", "busctl", "networkctl", "systemd-nspawn")
	h := testbed.NewHostT(t, testbed.Options{NoBridge: true})
	dir := t.TempDir()
	sysctlDir := filepath.Join(dir, "sysctl.d")
	conf := writeConfig(t, dir, fmt.Sprintf("networkd = %q\nsysctl = %q\n[network]\nygg_admin = %q\nipv4 = %q\n", h.NetworkDir, sysctlDir, h.YggAdmin, h.IPv4))
	gw := netip.PrefixFrom(h.YggGateway(), 128)

	code, out := mbctlIn(t, h, "--config", conf, "host", "check")
	t.Logf("host check before setup:\n%s", out)
	if code != 1 {
		t.Errorf("host check without the bridge: exit status %d, want 1", code)
	}
	if line := checkLine(out, "bridge srvgrp0"); !strings.HasPrefix(line, "✗") || !strings.Contains(line, "srvgrp0 does not exist; fix: run `mbctl host setup`") {
		t.Errorf("bridge line = %q, want ✗ with the fix", line)
	}
	if !strings.Contains(out, "mbctl: ") || !strings.Contains(out, "checks failed") {
		t.Errorf("no summary error:\n%s", out)
	}

	code, out = mbctlIn(t, h, "--config", conf, "host", "setup", "--dry-run")
	if code != 0 || !strings.Contains(out, "would create "+filepath.Join(h.NetworkDir, "80-man8s-srvgrp0.network")) ||
		!strings.Contains(out, "    Address="+gw.String()+"\n") || !strings.Contains(out, "would reload systemd-networkd") {
		t.Errorf("host setup --dry-run: exit status %d, output:\n%s", code, out)
	}

	code, out = mbctlIn(t, h, "--config", conf, "host", "setup")
	t.Logf("host setup:\n%s", out)
	if code != 0 {
		t.Fatalf("host setup: exit status %d", code)
	}
	for _, want := range []string{
		"wrote " + filepath.Join(h.NetworkDir, "80-man8s-srvgrp0.netdev"),
		"wrote " + filepath.Join(h.NetworkDir, "80-man8s-srvgrp0.network"),
		"wrote " + filepath.Join(sysctlDir, "99-man8s-forwarding.conf"),
		"reloaded systemd-networkd",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("host setup output lacks %q", want)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := h.WaitAddrs(ctx, "srvgrp0", h.IPv4.Addr(), gw.Addr(), h.ULA.Addr()); err != nil { // network.ipv4 too
		t.Fatalf("after host setup: %v", err)
	}

	code, out = mbctlIn(t, h, "--config", conf, "host", "check")
	t.Logf("host check after setup:\n%s", out)
	want := map[string]string{
		"bridge srvgrp0":   "✓ bridge srvgrp0: has ygg gateway " + gw.String() + ", ULA fc00::f:e:d:c/64",
		"forwarding":       "✓ forwarding: net.ipv6.conf.all.forwarding, net.ipv4.ip_forward = 1",
		"systemd-networkd": "✓ systemd-networkd: running",
		"yggdrasil":        "✓ yggdrasil: subnet " + h.Ygg.Subnet.String(),
	}
	for name, prefix := range want {
		if line := checkLine(out, name); !strings.HasPrefix(line, prefix) {
			t.Errorf("%s line = %q, want it to start with %q", name, line, prefix)
		}
	}
	if failed := strings.Contains(out, "✗"); failed != (code == 1) {
		t.Errorf("exit status %d with output:\n%s", code, out)
	}

	code, out = mbctlIn(t, h, "--config", conf, "host", "setup")
	if code != 0 || !strings.HasPrefix(out, "nothing to change: ") {
		t.Errorf("second host setup: exit status %d, output:\n%s", code, out)
	}
}
