package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/hostcheck"
	"github.com/man8s/mbctl/internal/host/hostsetup"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

// hostEnv is a host in temp dirs: a config whose every path (and busybox)
// is in a temp dir, with a fixed yggdrasil prefix, and a fake /proc/sys
// with forwarding off.
func hostEnv(t *testing.T) (env map[string]string, networkDir, procSys string) {
	t.Helper()
	root := t.TempDir()
	networkDir = filepath.Join(root, "network")
	procSys = filepath.Join(root, "proc/sys")
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		writeTestFile(t, filepath.Join(procSys, key), "0\n")
	}
	busybox := filepath.Join(root, "bin/busybox")
	writeTestFile(t, busybox, "")
	var paths strings.Builder
	for _, key := range []string{"machines", "configs", "storage", "nspawn", "machinectl", "cache", "scratch", "systemd_units"} {
		fmt.Fprintf(&paths, "%s = %q\n", key, filepath.Join(root, "var", key))
	}
	env = noConfig(t, `ygg_prefix = "300:2e98:a4b0:1789::/64"
[machines]
busybox = "`+busybox+`"
[paths]
networkd = "`+networkDir+`"
sysctl = "`+filepath.Join(root, "sysctl.d")+`"
`+paths.String())
	return env, networkDir, procSys
}

// envConfig loads the configuration that env names, as the Factory does.
func envConfig(env map[string]string) func() (config.Config, config.Origin, error) {
	f := &Factory{Getenv: func(k string) string { return env[k] }}
	return f.Config
}

func runHostSetup(t *testing.T, env map[string]string, o HostSetupOptions) (string, string, error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	o.IO, o.Config, o.Log = ios, envConfig(env), slog.New(slog.DiscardHandler)
	if o.IPv6Uplink == nil {
		o.IPv6Uplink = fakeIPv6Uplink(true)
	}
	err := hostSetupRun(t.Context(), &o)
	return out.String(), errOut.String(), err
}

// fakeIPv6Uplink is a host with (present) or without an IPv6 default
// route; network.ipv6_uplink still decides when set.
func fakeIPv6Uplink(present bool) func(mode, bridge string) (uplink.IPv6, error) {
	return func(mode, bridge string) (uplink.IPv6, error) {
		return uplink.Decide(mode, func() (uplink.Uplink, error) {
			if !present {
				return uplink.Uplink{}, nil
			}
			return uplink.Uplink{IPv6: &uplink.Route{Link: "eth0", Gateway: netip.MustParseAddr("fe80::1")}}, nil
		})
	}
}

// On a host without IPv6 uplink the bridge's RAs offer no default route:
// the dry run shows it, the JSON says so, and once the host has IPv6 a
// second setup takes it out again.
func TestHostSetupNoIPv6Uplink(t *testing.T) {
	env, networkDir, procSys := hostEnv(t)
	network := filepath.Join(networkDir, "80-man8s-srvgrp0.network")
	o := HostSetupOptions{ProcSys: procSys, IPv6Uplink: fakeIPv6Uplink(false), Networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return true, nil },
		Reload:  func(context.Context) error { return nil },
	}}
	dry := o
	dry.DryRun = true
	out, errOut, err := runHostSetup(t, env, dry)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "    [IPv6SendRA]\n    # This host has no IPv6 uplink") || !strings.Contains(out, "    RouterLifetimeSec=0\n") {
		t.Errorf("dry run does not show RouterLifetimeSec=0:\n%s", out)
	}
	if want := "notice: this host has no IPv6 uplink (no IPv6 default route): srvgrp0's router advertisements would offer no default route (RouterLifetimeSec=0)"; !strings.Contains(errOut, want) {
		t.Errorf("dry run notice %q lacks %q", errOut, want)
	}
	if _, _, err := runHostSetup(t, env, o); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(network); !strings.Contains(string(data), "\nRouterLifetimeSec=0\n") {
		t.Errorf("%s without RouterLifetimeSec=0:\n%s", network, data)
	}
	jo := o
	jo.JSON = true
	out, _, err = runHostSetup(t, env, jo)
	var rep struct {
		IPv6Uplink       bool   `json:"ipv6_uplink"`
		IPv6UplinkSource string `json:"ipv6_uplink_source"`
		Changed          bool   `json:"changed"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.IPv6Uplink || rep.IPv6UplinkSource != "probe" || rep.Changed {
		t.Errorf("--json on the set-up host: %v, %+v\n%s", err, rep, out)
	}

	// The host gained IPv6: setup restores the default router.
	o.IPv6Uplink = fakeIPv6Uplink(true)
	dry.IPv6Uplink = o.IPv6Uplink
	out, errOut, _ = runHostSetup(t, env, dry)
	if !strings.Contains(out, "would update "+network+", changing:\n") || !strings.Contains(out, "    -RouterLifetimeSec=0\n") || strings.Contains(errOut, "no IPv6 uplink") {
		t.Errorf("dry run with IPv6:\n%s\nstderr %q", out, errOut)
	}
	if out, _, err := runHostSetup(t, env, o); err != nil || !strings.Contains(out, "wrote "+network) {
		t.Fatalf("setup with IPv6: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(network); strings.Contains(string(data), "RouterLifetimeSec") {
		t.Errorf("%s still has RouterLifetimeSec:\n%s", network, data)
	}

	// network.ipv6_uplink = no wins over the probe.
	conf, err := os.ReadFile(env[config.EnvVar])
	if err != nil {
		t.Fatal(err)
	}
	env2 := map[string]string{config.EnvVar: filepath.Join(t.TempDir(), "mbctl.toml")}
	writeTestFile(t, env2[config.EnvVar], strings.Replace(string(conf), "[network]\n", "[network]\nipv6_uplink = \"no\"\n", 1))
	jo.IPv6Uplink = o.IPv6Uplink
	out, _, err = runHostSetup(t, env2, jo)
	rep = struct {
		IPv6Uplink       bool   `json:"ipv6_uplink"`
		IPv6UplinkSource string `json:"ipv6_uplink_source"`
		Changed          bool   `json:"changed"`
	}{}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.IPv6Uplink || rep.IPv6UplinkSource != "config" || !rep.Changed {
		t.Errorf("--json with ipv6_uplink = no: %v, %+v\n%s", err, rep, out)
	}
}

func TestNewCmdHost(t *testing.T) {
	ignore := cmp.Options{
		cmpopts.IgnoreFields(HostCheckOptions{}, "IO", "Config", "Log", "Probes"),
		cmpopts.IgnoreFields(HostSetupOptions{}, "IO", "Config", "Log", "ProcSys", "Networkd", "IPv6Uplink"),
	}
	for _, tt := range []struct {
		name    string
		cmd     func(*Factory, *any) *cobra.Command
		args    []string
		want    any
		wantErr string
	}{
		{"check", hostCheckCmd, nil, &HostCheckOptions{}, ""},
		{"check --json", hostCheckCmd, []string{"--json"}, &HostCheckOptions{JSON: true}, ""},
		{"setup", hostSetupCmd, nil, &HostSetupOptions{}, ""},
		{"setup all flags", hostSetupCmd, []string{"--bridge", "br1", "--dry-run", "--no-reload", "--json"},
			&HostSetupOptions{Bridge: "br1", DryRun: true, NoReload: true, JSON: true}, ""},
		{"setup bad bridge", hostSetupCmd, []string{"--bridge", "a b"}, nil, "--bridge: interface name"},
		{"setup argument", hostSetupCmd, []string{"br1"}, nil, "takes no arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			cmd := tt.cmd(testFactory(t), &got)
			cmd.SetArgs(append([]string{}, tt.args...))
			cmd.SetOut(new(strings.Builder))
			cmd.SetErr(new(strings.Builder))
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != nil {
					t.Fatalf("err = %v, options %+v; want an error %q before running", err, got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, ignore); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func hostCheckCmd(f *Factory, got *any) *cobra.Command {
	return NewCmdHostCheck(f, func(_ context.Context, o *HostCheckOptions) error { *got = o; return nil })
}

func hostSetupCmd(f *Factory, got *any) *cobra.Command {
	return NewCmdHostSetup(f, func(_ context.Context, o *HostSetupOptions) error { *got = o; return nil })
}

// The commands' real dependencies are filled in.
func TestNewCmdHostDependencies(t *testing.T) {
	var check *HostCheckOptions
	cmd := NewCmdHostCheck(testFactory(t), func(_ context.Context, o *HostCheckOptions) error { check = o; return nil })
	cmd.SetArgs([]string{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if check.IO == nil || check.Config == nil || check.Log == nil || check.Probes == nil {
		t.Errorf("host check options lack dependencies: %+v", check)
	}
	var setup *HostSetupOptions
	cmd = NewCmdHostSetup(testFactory(t), func(_ context.Context, o *HostSetupOptions) error { setup = o; return nil })
	cmd.SetArgs([]string{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if setup.IO == nil || setup.Config == nil || setup.Log == nil || setup.ProcSys != "/proc/sys" || setup.Networkd.Running == nil || setup.Networkd.Reload == nil {
		t.Errorf("host setup options lack dependencies: %+v", setup)
	}
}

func TestHostSetup(t *testing.T) {
	env, networkDir, procSys := hostEnv(t)
	reloads := 0
	o := HostSetupOptions{ProcSys: procSys, Networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return true, nil },
		Reload:  func(context.Context) error { reloads++; return nil },
	}}

	// Dry run: says what it would do and does nothing.
	dry := o
	dry.DryRun = true
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
	o.Bridge = "br1"
	out, errOut, err = runHostSetup(t, env, o)
	if err != nil || !strings.Contains(out, "wrote "+filepath.Join(networkDir, "80-man8s-br1.network")) || reloads != 2 {
		t.Errorf("--bridge br1: err %v, reloads %d, output:\n%s", err, reloads, out)
	}
	if !strings.Contains(errOut, `set network.bridge = "br1"`) {
		t.Errorf("--bridge br1 without network.bridge: no notice in %q", errOut)
	}
}

// hostSetupJSON mirrors hostSetupReport.
type hostSetupJSON struct {
	DryRun       bool   `json:"dry_run"`
	Bridge       string `json:"bridge"`
	Subnet       string `json:"subnet"`
	SubnetSource string `json:"subnet_source"`
	Changed      bool   `json:"changed"`
	Files        []struct {
		Path, Action, Content, Diff string
		Written                     bool
	} `json:"files"`
	Sysctls []struct {
		Key, Action, Old, New string
		Set                   bool
	} `json:"sysctls"`
	Networkd string `json:"networkd"`
}

// summary is the report in one line per file and sysctl.
func (r hostSetupJSON) summary() []string {
	var s []string
	for _, f := range r.Files {
		s = append(s, fmt.Sprintf("%s %s written=%v content=%v diff=%v", filepath.Base(f.Path), f.Action, f.Written, f.Content != "", f.Diff != ""))
	}
	for _, c := range r.Sysctls {
		s = append(s, fmt.Sprintf("%s %s %s->%s set=%v", c.Key, c.Action, c.Old, c.New, c.Set))
	}
	return s
}

func TestHostSetupJSON(t *testing.T) {
	env, networkDir, procSys := hostEnv(t)
	running := true
	o := HostSetupOptions{ProcSys: procSys, JSON: true, Networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return running, nil },
		Reload:  func(context.Context) error { return nil },
	}}
	run := func(o HostSetupOptions) hostSetupJSON {
		t.Helper()
		out, _, err := runHostSetup(t, env, o)
		if err != nil {
			t.Fatal(err)
		}
		var rep hostSetupJSON
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		return rep
	}
	check := func(name string, got hostSetupJSON, changed bool, networkd string, want []string) {
		t.Helper()
		if got.Bridge != "srvgrp0" || got.Subnet != "300:2e98:a4b0:1789::/64" || got.SubnetSource != yggadmin.SubnetFromConfig ||
			got.Changed != changed || got.Networkd != networkd {
			t.Errorf("%s: report %+v; want changed %v, networkd %s", name, got, changed, networkd)
		}
		if diff := cmp.Diff(want, got.summary()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	dry := o
	dry.DryRun = true
	got := run(dry)
	check("dry run", got, true, networkdWouldReload, []string{
		"80-man8s-srvgrp0.netdev create written=false content=true diff=false",
		"80-man8s-srvgrp0.network create written=false content=true diff=false",
		"99-man8s-forwarding.conf create written=false content=true diff=false",
		"net.ipv4.ip_forward update 0->1 set=false",
		"net.ipv6.conf.all.forwarding update 0->1 set=false",
	})
	if !got.DryRun || !strings.Contains(got.Files[1].Content, "Address=300:2e98:a4b0:1789::1/128\n") {
		t.Errorf("dry run: dry_run %v, .network content:\n%s", got.DryRun, got.Files[1].Content)
	}
	if _, err := os.Stat(networkDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created %s: %v", networkDir, err)
	}
	noReload := dry
	noReload.NoReload = true
	check("dry run --no-reload", run(noReload), true, networkdNotReloaded, got.summary())

	got = run(o)
	check("setup", got, true, networkdReloaded, []string{
		"80-man8s-srvgrp0.netdev create written=true content=true diff=false",
		"80-man8s-srvgrp0.network create written=true content=true diff=false",
		"99-man8s-forwarding.conf create written=true content=true diff=false",
		"net.ipv4.ip_forward update 0->1 set=true",
		"net.ipv6.conf.all.forwarding update 0->1 set=true",
	})
	if got.DryRun {
		t.Error("setup: dry_run is true")
	}

	unchanged := []string{
		"80-man8s-srvgrp0.netdev unchanged written=false content=false diff=false",
		"80-man8s-srvgrp0.network unchanged written=false content=false diff=false",
		"99-man8s-forwarding.conf unchanged written=false content=false diff=false",
		"net.ipv4.ip_forward unchanged 1->1 set=false",
		"net.ipv6.conf.all.forwarding unchanged 1->1 set=false",
	}
	check("second setup", run(o), false, networkdUnchanged, unchanged)
	check("dry run after setup", run(dry), false, networkdUnchanged, unchanged)

	// Someone edited the .network: an update with a diff; networkd is down.
	network := filepath.Join(networkDir, "80-man8s-srvgrp0.network")
	writeTestFile(t, network, "[Match]\nName=srvgrp0\n")
	running = false
	got = run(dry)
	check("dry run of an update", got, true, networkdNotRunning, append(append([]string{}, unchanged[0]),
		"80-man8s-srvgrp0.network update written=false content=true diff=true", unchanged[2], unchanged[3], unchanged[4]))
	if !strings.Contains(got.Files[1].Diff, "+Address=300:2e98:a4b0:1789::1/128\n") {
		t.Errorf("diff of the update:\n%s", got.Files[1].Diff)
	}
	check("update", run(o), true, networkdNotRunning, append(append([]string{}, unchanged[0]),
		"80-man8s-srvgrp0.network update written=true content=true diff=true", unchanged[2], unchanged[3], unchanged[4]))
}

// A reload that fails still reports, as JSON, what was written.
func TestHostSetupJSONFailedReload(t *testing.T) {
	env, _, procSys := hostEnv(t)
	out, _, err := runHostSetup(t, env, HostSetupOptions{ProcSys: procSys, JSON: true, Networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return true, nil },
		Reload:  func(context.Context) error { return errors.New("Failed to connect to bus") },
	}})
	if err == nil || !strings.Contains(err.Error(), "networkctl reload") {
		t.Errorf("failed reload: err = %v", err)
	}
	var rep hostSetupJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Networkd != networkdNotReloaded || len(rep.Files) != 3 || !rep.Files[0].Written {
		t.Errorf("report %+v; want the files written and networkd not_reloaded", rep)
	}
}

// A dry run that cannot tell whether networkd runs says so instead of
// claiming it does not run.
func TestHostSetupDryRunNetworkdUnknown(t *testing.T) {
	env, _, procSys := hostEnv(t)
	out, _, err := runHostSetup(t, env, HostSetupOptions{ProcSys: procSys, DryRun: true, Networkd: hostsetup.Networkd{
		Running: func(context.Context) (bool, error) { return false, errors.New("permission denied") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "cannot tell whether systemd-networkd runs: permission denied") || strings.Contains(out, "is not running") {
		t.Errorf("output:\n%s", out)
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
	_, _, err := runHostSetup(t, env, HostSetupOptions{ProcSys: procSys, Networkd: hostsetup.Networkd{
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

// TestHostCheck runs the checks on a fake host: every path, procfs and the
// busybox are in temp dirs, and every probe is a fake.
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
	env, _, _ := hostEnv(t)
	cfg, _, err := envConfig(env)()
	if err != nil {
		t.Fatal(err)
	}
	probes := func(got config.Config) (hostcheck.Probes, func() error, error) {
		if got.Paths != cfg.Paths {
			t.Errorf("probes for paths %+v, want %+v", got.Paths, cfg.Paths)
		}
		return hostcheck.Probes{
			Proc:   proc,
			Links:  noLinks{},
			Output: func(context.Context, string, ...string) ([]byte, error) { return []byte("systemd 255 (255.4)\n"), nil },
			LookPath: func(name string) (string, error) {
				if name == "busybox" {
					return "", errors.New("not on the fake PATH")
				}
				return "/usr/bin/" + name, nil
			},
			Subnet: func(context.Context) (netip.Prefix, string, error) {
				return netip.MustParsePrefix("300::/64"), yggadmin.SubnetFromNode, nil
			},
			Userns: func(context.Context) error { return nil },
			Idmap: func(_ context.Context, dir string) error {
				if root := filepath.Dir(filepath.Dir(cfg.Paths.Configs)); !strings.HasPrefix(dir, root) {
					t.Errorf("idmap probe of %s, outside the fake host", dir)
				}
				return nil
			},
			CheckStatic: func(string) error { return nil },
			Geteuid:     func() int { return 0 },
			// An IPv4-only host.
			Uplink: func() (uplink.Uplink, error) {
				return uplink.Uplink{IPv4: &uplink.Route{Link: "eth0", Gateway: netip.MustParseAddr("198.18.9.1")}}, nil
			},
		}, func() error { return nil }, nil
	}
	for _, asJSON := range []bool{false, true} {
		ios, _, out, _ := iostreams.Test()
		err := hostCheckRun(t.Context(), &HostCheckOptions{IO: ios, Config: envConfig(env), Log: slog.New(slog.DiscardHandler), Probes: probes, JSON: asJSON})
		// No bridge and no networkd in the fake host.
		if err == nil || err.Error() != "2 of 12 checks failed" {
			t.Errorf("json=%v: err = %v, want 2 of 12 checks failed", asJSON, err)
		}
		if !asJSON {
			for _, want := range []string{
				"✓ systemd-nspawn: /usr/bin/systemd-nspawn, systemd 255.4\n",
				"✗ bridge srvgrp0: srvgrp0 does not exist; fix: run `mbctl host setup`",
				"✓ static busybox: " + cfg.Machines.Busybox + "\n",
				"✓ directories: 0 writable; missing but can be created: paths.machines, ",
				"✓ ipv4 uplink: default route via 198.18.9.1 dev eth0\n",
				"- ipv6 uplink: no IPv6 default route (other than onto srvgrp0): no IPv6 to the internet. Machines still get ULA addresses",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out.String(), "\n"); n != 12 {
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
		if rep.OK || rep.Failed != 2 || len(rep.Checks) != 12 || rep.Checks[0].Status != "ok" || rep.Checks[4].Status != "fail" {
			t.Errorf("JSON report %+v", rep)
		}
		if c := rep.Checks[6]; c.Name != "ipv6 uplink" || c.Status != "absent" || c.Fix != "" {
			t.Errorf("JSON ipv6 uplink = %+v, want absent without a fix", c)
		}
	}
}
