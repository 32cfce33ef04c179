package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/hostcheck"
	"github.com/man8s/mbctl/internal/host/hostsetup"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

// hostEnv is a host in temp dirs: a config whose networkd and sysctl dirs
// are temp dirs, with a fixed yggdrasil prefix, and a fake /proc/sys with
// forwarding off.
func hostEnv(t *testing.T) (env map[string]string, networkDir, procSys string) {
	t.Helper()
	root := t.TempDir()
	networkDir = filepath.Join(root, "network")
	procSys = filepath.Join(root, "proc/sys")
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		writeTestFile(t, filepath.Join(procSys, key), "0\n")
	}
	env = noConfig(t, `ygg_prefix = "300:2e98:a4b0:1789::/64"
[paths]
networkd = "`+networkDir+`"
sysctl = "`+filepath.Join(root, "sysctl.d")+`"
`)
	return env, networkDir, procSys
}

func runHostSetup(t *testing.T, env map[string]string, o hostSetupOptions) (string, string, error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := &Factory{IO: ios, Getenv: func(k string) string { return env[k] }}
	err := hostSetup(t.Context(), f, o)
	return out.String(), errOut.String(), err
}

func TestHostSetup(t *testing.T) {
	env, networkDir, procSys := hostEnv(t)
	reloads := 0
	o := hostSetupOptions{procSys: procSys, networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return true, nil },
		Reload:  func(context.Context) error { reloads++; return nil },
	}}

	// Dry run: says what it would do and does nothing.
	dry := o
	dry.dryRun = true
	out, _, err := runHostSetup(t, env, dry)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"would create " + filepath.Join(networkDir, "80-man8s-srvgrp0.network") + ":\n",
		"    Address=300:2e98:a4b0:1789::1/128\n", "    Destination=300:2e98:a4b0:1789::/64\n",
		"would set net.ipv6.conf.all.forwarding = 1 (now 0)\n",
		"would reload systemd-networkd",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(networkDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created %s: %v", networkDir, err)
	}

	out, errOut, err := runHostSetup(t, env, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wrote " + filepath.Join(networkDir, "80-man8s-srvgrp0.netdev"), "set net.ipv4.ip_forward = 1", "reloaded systemd-networkd"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "using network.ygg_prefix 300:2e98:a4b0:1789::/64") {
		t.Errorf("no notice about the configured prefix: %q", errOut)
	}
	if reloads != 1 {
		t.Errorf("reloads = %d, want 1", reloads)
	}

	out, _, err = runHostSetup(t, env, o)
	if err != nil || !strings.HasPrefix(out, "nothing to change") || reloads != 1 {
		t.Errorf("second run: err %v, reloads %d, output %q; want nothing to change", err, reloads, out)
	}
	out, _, _ = runHostSetup(t, env, dry)
	if !strings.Contains(out, "is up to date") || !strings.HasSuffix(out, "nothing to change\n") {
		t.Errorf("dry run after setup:\n%s", out)
	}

	// Another bridge: its own files, another reload.
	o.bridge = "br1"
	out, errOut, err = runHostSetup(t, env, o)
	if err != nil || !strings.Contains(out, "wrote "+filepath.Join(networkDir, "80-man8s-br1.network")) || reloads != 2 {
		t.Errorf("--bridge br1: err %v, reloads %d, output:\n%s", err, reloads, out)
	}
	if !strings.Contains(errOut, `set network.bridge = "br1"`) {
		t.Errorf("--bridge br1 without network.bridge: no notice in %q", errOut)
	}
}

func TestHostSetupErrors(t *testing.T) {
	code, _, stderr := runCLI(t, noConfig(t, ""), "host", "setup", "--bridge", "a b", "--dry-run")
	if code != exitUsage || !strings.Contains(stderr, "--bridge") {
		t.Errorf("bad --bridge: status %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, noConfig(t, ""), "host", "setup", "--dry-run")
	if code != exitError || !strings.Contains(stderr, "yggdrasil subnet") {
		t.Errorf("no subnet: status %d, stderr %q", code, stderr)
	}

	env, _, procSys := hostEnv(t)
	_, _, err := runHostSetup(t, env, hostSetupOptions{procSys: procSys, networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return true, nil },
		Reload:  func(context.Context) error { return errors.New("Failed to connect to bus") },
	}})
	if err == nil || !strings.Contains(err.Error(), "networkctl reload") {
		t.Errorf("failed reload: err = %v", err)
	}
}

type noLinks struct{}

func (noLinks) LinkByName(string) (netlink.Link, error) { return nil, netlink.LinkNotFoundError{} }
func (noLinks) AddrList(netlink.Link, int) ([]netlink.Addr, error) {
	return nil, nil
}

func TestHostCheck(t *testing.T) {
	proc := t.TempDir()
	writeTestFile(t, filepath.Join(proc, "sys/user/max_user_namespaces"), "100\n")
	writeTestFile(t, filepath.Join(proc, "sys/net/ipv4/ip_forward"), "1\n")
	writeTestFile(t, filepath.Join(proc, "sys/net/ipv6/conf/all/forwarding"), "1\n")
	if err := os.MkdirAll(filepath.Join(proc, "self/ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("net:[1]", filepath.Join(proc, "self/ns/net")); err != nil {
		t.Fatal(err)
	}
	probes := func(config.Config) (hostcheck.Probes, func() error, error) {
		return hostcheck.Probes{
			Proc:     proc,
			Links:    noLinks{},
			Output:   func(context.Context, string, ...string) ([]byte, error) { return []byte("systemd 255 (255.4)\n"), nil },
			LookPath: func(name string) (string, error) { return "/usr/bin/" + name, nil },
			Subnet: func(context.Context) (netip.Prefix, string, error) {
				return netip.MustParsePrefix("300::/64"), yggadmin.SubnetFromNode, nil
			},
			Userns:      func(context.Context) error { return nil },
			Idmap:       func(context.Context, string) error { return nil },
			CheckStatic: func(string) error { return nil },
			Geteuid:     func() int { return 0 },
		}, func() error { return nil }, nil
	}
	env, _, _ := hostEnv(t)
	for _, asJSON := range []bool{false, true} {
		ios, _, out, _ := iostreams.Test()
		f := &Factory{IO: ios, Getenv: func(k string) string { return env[k] }}
		err := hostCheck(t.Context(), f, hostCheckOptions{json: asJSON, probes: probes})
		// No bridge and no networkd in the fake host.
		if err == nil || err.Error() != "2 of 10 checks failed" {
			t.Errorf("json=%v: err = %v, want 2 of 10 checks failed", asJSON, err)
		}
		if !asJSON {
			for _, want := range []string{
				"✓ systemd-nspawn: /usr/bin/systemd-nspawn, systemd 255.4\n",
				"✗ bridge srvgrp0: srvgrp0 does not exist; fix: run `mbctl host setup`",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out.String(), "\n"); n != 10 {
				t.Errorf("%d lines, want one per check:\n%s", n, out)
			}
			continue
		}
		var rep struct {
			OK     bool
			Failed int
			Checks []struct{ Name, Status, Detail, Fix string }
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if rep.OK || rep.Failed != 2 || len(rep.Checks) != 10 || rep.Checks[0].Status != "ok" || rep.Checks[4].Status != "fail" {
			t.Errorf("JSON report %+v", rep)
		}
	}
}
