package hostsetup

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var subnet = netip.MustParsePrefix("300:2e98:a4b0:1789::/64")

func TestRenderGolden(t *testing.T) {
	files, err := Render("srvgrp0", subnet)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		checkGolden(t, filepath.Join("testdata", f.Name+".golden"), f)
	}
}

// checkGolden compares f with the golden file (go test -update writes it).
func checkGolden(t *testing.T, golden string, f Rendered) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(f.Content)); d != "" {
		t.Errorf("%s differs from %s (-want +got):\n%s", f.Name, golden, d)
	}
}

// On a host without IPv6 uplink only the .network differs: its RAs offer
// no default route.
func TestRenderNoIPv6UplinkGolden(t *testing.T) {
	with, err := Render("srvgrp0", subnet)
	if err != nil {
		t.Fatal(err)
	}
	without, err := RenderFor(Bridge{Name: "srvgrp0", Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range without {
		if f.Name != "80-man8s-srvgrp0.network" {
			if string(f.Content) != string(with[i].Content) {
				t.Errorf("%s differs without IPv6 uplink", f.Name)
			}
			continue
		}
		checkGolden(t, filepath.Join("testdata", "80-man8s-srvgrp0-no-ipv6-uplink.network.golden"), f)
		if !strings.Contains(string(f.Content), "[IPv6SendRA]\n# This host has no IPv6 uplink") || strings.Count(string(f.Content), NoDefaultRouter+"\n") != 1 {
			t.Errorf("no %s right below [IPv6SendRA]:\n%s", NoDefaultRouter, f.Content)
		}
		if strings.Contains(string(with[i].Content), NoDefaultRouter) {
			t.Errorf("with an IPv6 uplink the .network has %s", NoDefaultRouter)
		}
	}
}

func TestRender(t *testing.T) {
	files, err := Render("br-test", netip.MustParsePrefix("301:aa::/64"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		s := string(f.Content)
		for _, bad := range []string{"srvgrp0", "YGGDRASIL_SUBNET", "PLACEHOLDER"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s still contains %q:\n%s", f.Name, bad, s)
			}
		}
	}
	if want := []string{"80-man8s-br-test.netdev", "80-man8s-br-test.network", "99-man8s-forwarding.conf"}; !slices.Equal(names, want) {
		t.Errorf("names = %v, want %v", names, want)
	}
	network := string(files[1].Content)
	for _, want := range []string{"Name=br-test\n", "Address=301:aa::1/128\n", "Destination=301:aa::/64\n", "Address=fc00::f:e:d:c/64\n"} {
		if !strings.Contains(network, want) {
			t.Errorf(".network lacks %q:\n%s", want, network)
		}
	}
	if !strings.Contains(network, "\nAddress=192.168.77.1/24\n") {
		t.Errorf(".network lacks the shipped IPv4 address:\n%s", network)
	}
	own, err := RenderFor(Bridge{Name: "br-test", IPv4: netip.MustParsePrefix("198.18.5.1/24"), Subnet: netip.MustParsePrefix("301:aa::/64"), IPv6Uplink: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(own[1].Content); !strings.Contains(s, "\nAddress=198.18.5.1/24\n") || strings.Contains(s, "192.168.77.") {
		t.Errorf("network.ipv4 198.18.5.1/24 is not the bridge's address:\n%s", s)
	}
	if _, err := RenderFor(Bridge{Name: "br-test", IPv4: netip.MustParsePrefix("fc00::1/64"), Subnet: netip.MustParsePrefix("301:aa::/64")}); err == nil {
		t.Error("an IPv6 bridge address was rendered as its IPv4 one")
	}
	for _, p := range []string{"", "10.0.0.0/8", "300::1/128"} {
		var pfx netip.Prefix
		if p != "" {
			pfx = netip.MustParsePrefix(p)
		}
		if _, err := Render("srvgrp0", pfx); err == nil {
			t.Errorf("Render with subnet %q: no error", p)
		}
	}
}

func TestSysctls(t *testing.T) {
	got, err := Sysctls([]byte("# c\n; c\n\nnet.ipv4.ip_forward = 1\nkernel.x=a b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][2]string{{"net.ipv4.ip_forward", "1"}, {"kernel.x", "a b"}}; !cmp.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"novalue\n", "= 1\n", "../x = 1\n", "a/b = 1\n"} {
		if _, err := Sysctls([]byte(bad)); err == nil {
			t.Errorf("Sysctls(%q): no error", bad)
		}
	}
}

func TestDiff(t *testing.T) {
	tests := []struct{ old, new, want string }{
		{"a\nb\nc\n", "a\nb\nc\n", ""},
		{"a\nb\nc\n", "a\nx\nc\n", "-b\n+x\n"},
		{"", "a\n", "+a\n"},
		{"a\nb\n", "b\n", "-a\n"},
		{"a\n", "a\nb\n", "+b\n"},
	}
	for _, tt := range tests {
		if got := Diff([]byte(tt.old), []byte(tt.new)); got != tt.want {
			t.Errorf("Diff(%q, %q) = %q, want %q", tt.old, tt.new, got, tt.want)
		}
	}
}

// fakeHost is a host in temp dirs: networkd and sysctl.d dirs and a fake
// /proc/sys with forwarding off.
type fakeHost struct {
	opts Options
}

func newFakeHost(t *testing.T) fakeHost {
	t.Helper()
	root := t.TempDir()
	o := Options{
		Bridge:     "srvgrp0",
		Subnet:     subnet,
		NetworkDir: filepath.Join(root, "etc/systemd/network"),
		SysctlDir:  filepath.Join(root, "etc/sysctl.d"),
		ProcSys:    filepath.Join(root, "proc/sys"),
	}
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		p := filepath.Join(o.ProcSys, key)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fakeHost{o}
}

// fakeNetworkd records reloads.
type fakeNetworkd struct {
	running   bool
	runErr    error
	reloadErr error
	reloads   int
}

func (f *fakeNetworkd) networkd() Networkd {
	return Networkd{
		Running: func(context.Context) (bool, error) { return f.running, f.runErr },
		Reload: func(context.Context) error {
			f.reloads++
			return f.reloadErr
		},
	}
}

func actions(p *Plan) []string {
	var out []string
	for _, f := range p.Files {
		out = append(out, filepath.Base(f.Path)+":"+f.Action.String())
	}
	for _, s := range p.Sysctls {
		out = append(out, s.Key+":"+s.Action.String())
	}
	return out
}

func TestPlanApply(t *testing.T) {
	tests := []struct {
		name string
		// prepare changes the fake host before the plan.
		prepare     func(t *testing.T, o *Options)
		nd          fakeNetworkd
		noReload    bool
		wantActions []string
		wantReloads int
		wantStopped bool
		wantErr     string
	}{
		{
			name: "fresh host, networkd running",
			nd:   fakeNetworkd{running: true},
			wantActions: []string{"80-man8s-srvgrp0.netdev:create", "80-man8s-srvgrp0.network:create", "99-man8s-forwarding.conf:create",
				"net.ipv4.ip_forward:update", "net.ipv6.conf.all.forwarding:update"},
			wantReloads: 1,
		},
		{
			name: "fresh host, networkd stopped",
			nd:   fakeNetworkd{},
			wantActions: []string{"80-man8s-srvgrp0.netdev:create", "80-man8s-srvgrp0.network:create", "99-man8s-forwarding.conf:create",
				"net.ipv4.ip_forward:update", "net.ipv6.conf.all.forwarding:update"},
			wantStopped: true,
		},
		{
			name:     "no reload",
			nd:       fakeNetworkd{running: true},
			noReload: true,
			wantActions: []string{"80-man8s-srvgrp0.netdev:create", "80-man8s-srvgrp0.network:create", "99-man8s-forwarding.conf:create",
				"net.ipv4.ip_forward:update", "net.ipv6.conf.all.forwarding:update"},
		},
		{
			name: "network file edited, forwarding on, sysctl file there",
			prepare: func(t *testing.T, o *Options) {
				applyT(t, *o)
				p := filepath.Join(o.NetworkDir, "80-man8s-srvgrp0.network")
				if err := os.WriteFile(p, []byte("edited\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			nd: fakeNetworkd{running: true},
			wantActions: []string{"80-man8s-srvgrp0.netdev:unchanged", "80-man8s-srvgrp0.network:update", "99-man8s-forwarding.conf:unchanged",
				"net.ipv4.ip_forward:unchanged", "net.ipv6.conf.all.forwarding:unchanged"},
			wantReloads: 1,
		},
		{
			name: "only forwarding switched off again: no reload",
			prepare: func(t *testing.T, o *Options) {
				applyT(t, *o)
				if err := os.WriteFile(filepath.Join(o.ProcSys, "net/ipv6/conf/all/forwarding"), []byte("0\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			nd: fakeNetworkd{running: true},
			wantActions: []string{"80-man8s-srvgrp0.netdev:unchanged", "80-man8s-srvgrp0.network:unchanged", "99-man8s-forwarding.conf:unchanged",
				"net.ipv4.ip_forward:unchanged", "net.ipv6.conf.all.forwarding:update"},
		},
		{
			name: "subnet changed",
			prepare: func(t *testing.T, o *Options) {
				o2 := *o
				o2.Subnet = netip.MustParsePrefix("301::/64")
				applyT(t, o2)
			},
			nd: fakeNetworkd{running: true},
			wantActions: []string{"80-man8s-srvgrp0.netdev:unchanged", "80-man8s-srvgrp0.network:update", "99-man8s-forwarding.conf:unchanged",
				"net.ipv4.ip_forward:unchanged", "net.ipv6.conf.all.forwarding:unchanged"},
			wantReloads: 1,
		},
		{
			name: "host lost its IPv6 uplink",
			prepare: func(t *testing.T, o *Options) {
				applyT(t, *o)
				o.NoIPv6Uplink = true
			},
			nd: fakeNetworkd{running: true},
			wantActions: []string{"80-man8s-srvgrp0.netdev:unchanged", "80-man8s-srvgrp0.network:update", "99-man8s-forwarding.conf:unchanged",
				"net.ipv4.ip_forward:unchanged", "net.ipv6.conf.all.forwarding:unchanged"},
			wantReloads: 1,
		},
		{
			name: "host gained an IPv6 uplink",
			prepare: func(t *testing.T, o *Options) {
				o2 := *o
				o2.NoIPv6Uplink = true
				applyT(t, o2)
			},
			nd: fakeNetworkd{running: true},
			wantActions: []string{"80-man8s-srvgrp0.netdev:unchanged", "80-man8s-srvgrp0.network:update", "99-man8s-forwarding.conf:unchanged",
				"net.ipv4.ip_forward:unchanged", "net.ipv6.conf.all.forwarding:unchanged"},
			wantReloads: 1,
		},
		{
			name: "reload fails",
			nd:   fakeNetworkd{running: true, reloadErr: errors.New("no bus")},
			wantActions: []string{"80-man8s-srvgrp0.netdev:create", "80-man8s-srvgrp0.network:create", "99-man8s-forwarding.conf:create",
				"net.ipv4.ip_forward:update", "net.ipv6.conf.all.forwarding:update"},
			wantReloads: 1,
			wantErr:     "networkctl reload",
		},
		{
			name: "running check fails",
			nd:   fakeNetworkd{runErr: errors.New("no proc")},
			wantActions: []string{"80-man8s-srvgrp0.netdev:create", "80-man8s-srvgrp0.network:create", "99-man8s-forwarding.conf:create",
				"net.ipv4.ip_forward:update", "net.ipv6.conf.all.forwarding:update"},
			wantErr: "no proc",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			if tt.prepare != nil {
				tt.prepare(t, &h.opts)
			}
			plan, err := MakePlan(h.opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.wantActions, actions(plan)); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
			nd := tt.nd
			res, err := Apply(t.Context(), plan, nd.networkd(), !tt.noReload)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Apply error = %v, want it to contain %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if nd.reloads != tt.wantReloads {
				t.Errorf("reloads = %d, want %d", nd.reloads, tt.wantReloads)
			}
			if res.Reloaded != (tt.wantReloads > 0 && tt.wantErr == "") || res.NetworkdStopped != tt.wantStopped {
				t.Errorf("result %+v: want reloaded=%v stopped=%v", res, tt.wantReloads > 0, tt.wantStopped)
			}
			// Whatever happened before the reload, the files and sysctls are
			// now as planned, and a new plan changes nothing.
			again, err := MakePlan(h.opts)
			if err != nil {
				t.Fatal(err)
			}
			if again.Changed() {
				t.Errorf("second plan still changes: %v", actions(again))
			}
		})
	}
}

// applyT sets up o completely, with networkd stopped.
func applyT(t *testing.T, o Options) {
	t.Helper()
	plan, err := MakePlan(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(t.Context(), plan, Networkd{}, true); err != nil {
		t.Fatal(err)
	}
}

func TestPlanErrors(t *testing.T) {
	h := newFakeHost(t)
	o := h.opts
	o.NetworkDir = "relative"
	if _, err := MakePlan(o); err == nil || !strings.Contains(err.Error(), "paths.networkd") {
		t.Errorf("relative networkd dir: err = %v", err)
	}
	o = h.opts
	o.ProcSys = filepath.Join(t.TempDir(), "none")
	if _, err := MakePlan(o); err == nil || !strings.Contains(err.Error(), "net.ipv4.ip_forward") {
		t.Errorf("missing sysctl: err = %v", err)
	}
}

// From every starting state (each file missing, current or edited; each
// sysctl off or on), one Apply reaches the same end state, reloads networkd
// exactly when a networkd file changed, and a second plan is empty.
func TestApplyFromEveryState(t *testing.T) {
	want, err := Render("srvgrp0", subnet)
	if err != nil {
		t.Fatal(err)
	}
	const fileStates, sysctlStates = 3, 2
	total := 1
	for range want {
		total *= fileStates
	}
	total *= sysctlStates * sysctlStates
	for n := range total {
		h := newFakeHost(t)
		o := h.opts
		state, networkdEdited := n, false
		for _, f := range want {
			dir := o.NetworkDir
			if f.Kind == SysctlFile {
				dir = o.SysctlDir
			}
			path := filepath.Join(dir, f.Name)
			var content []byte
			switch state % fileStates {
			case 1:
				content = f.Content
			case 2:
				content = append([]byte("# edited\n"), f.Content...)
			}
			if state%fileStates != 0 {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if f.Kind == NetworkdFile && state%fileStates != 1 {
				networkdEdited = true
			}
			state /= fileStates
		}
		for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(filepath.Join(o.ProcSys, key), []byte(fmt.Sprintf("%d\n", state%sysctlStates)), 0o644); err != nil {
				t.Fatal(err)
			}
			state /= sysctlStates
		}
		plan, err := MakePlan(o)
		if err != nil {
			t.Fatal(err)
		}
		nd := &fakeNetworkd{running: true}
		if _, err := Apply(t.Context(), plan, nd.networkd(), true); err != nil {
			t.Fatalf("state %d: %v", n, err)
		}
		if wantReloads := map[bool]int{true: 1, false: 0}[networkdEdited]; nd.reloads != wantReloads {
			t.Errorf("state %d: %d reloads, want %d", n, nd.reloads, wantReloads)
		}
		again, err := MakePlan(o)
		if err != nil {
			t.Fatal(err)
		}
		if again.Changed() {
			t.Errorf("state %d: after Apply the plan still changes %v", n, actions(again))
		}
	}
}
