package hostcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/vishvananda/netlink"

	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/hostsetup"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

var subnet = netip.MustParsePrefix("300:2e98:a4b0:1789::/64")

// fakeLinks is a network namespace with links and their addresses.
type fakeLinks map[string]struct {
	kind  string
	addrs []string
}

func (f fakeLinks) LinkByName(name string) (netlink.Link, error) {
	l, ok := f[name]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	attrs := netlink.LinkAttrs{Name: name}
	if kind, up := strings.CutSuffix(l.kind, "+up"); up {
		l.kind, attrs.Flags = kind, net.FlagUp
	}
	if l.kind == "bridge" {
		return &netlink.Bridge{LinkAttrs: attrs}, nil
	}
	return &netlink.Dummy{LinkAttrs: attrs}, nil
}

func (f fakeLinks) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	var out []netlink.Addr
	for _, a := range f[link.Attrs().Name].addrs {
		p := netip.MustParsePrefix(a)
		out = append(out, netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}})
	}
	return out, nil
}

// fakeProc writes a procfs with the given files (path → content) and
// symlinks (path → "->target").
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for path, content := range files {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// goodProc is a host where everything in /proc is as it should be.
func goodProc() map[string]string {
	return map[string]string{
		"sys/user/max_user_namespaces":     "63000\n",
		"sys/net/ipv6/conf/all/forwarding": "1\n",
		"sys/net/ipv4/ip_forward":          "1\n",
		"self/ns/net":                      "->net:[4026531840]",
		"1/comm":                           "init\n",
		"1/ns/net":                         "->net:[4026531840]",
		"77/comm":                          "systemd-network\n",
		"77/ns/net":                        "->net:[4026531840]",
	}
}

func goodLinks() fakeLinks {
	return fakeLinks{"srvgrp0": {"bridge", []string{"300:2e98:a4b0:1789::1/128", "fc00::f:e:d:c/64", "fe80::1/64"}}}
}

// staticFile is a file the fake CheckStatic calls static.
func staticFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(p, []byte("elf"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func goodProbes(t *testing.T, proc map[string]string) Probes {
	return Probes{
		Proc:  fakeProc(t, proc),
		Links: goodLinks(),
		Output: func(_ context.Context, name string, args ...string) ([]byte, error) {
			return []byte("systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT\n"), nil
		},
		LookPath: func(name string) (string, error) { return "/usr/bin/" + name, nil },
		Subnet: func(context.Context) (netip.Prefix, string, error) {
			return subnet, yggadmin.SubnetFromNode, nil
		},
		Userns:      func(context.Context) error { return nil },
		Idmap:       func(context.Context, string) error { return nil },
		CheckStatic: func(string) error { return nil },
		Geteuid:     func() int { return 0 },
		Uplink:      func() (uplink.Uplink, error) { return dualStack(), nil },
	}
}

func dualStack() uplink.Uplink {
	return uplink.Uplink{
		IPv4: &uplink.Route{Link: "eth0", Gateway: netip.MustParseAddr("198.18.9.1")},
		IPv6: &uplink.Route{Link: "eth0", Gateway: netip.MustParseAddr("fe80::1")},
	}
}

// ipv4Only makes p's host one without IPv6 default route.
func ipv4Only(p *Probes) {
	u := dualStack()
	u.IPv6 = nil
	p.Uplink = func() (uplink.Uplink, error) { return u, nil }
}

// writeNetwork writes the bridge's .network as `host setup` does, with or
// without an IPv6 uplink.
func writeNetwork(t *testing.T, cfg config.Config, ipv6Uplink bool) {
	files, err := hostsetup.RenderFor(hostsetup.Bridge{Name: cfg.Network.Bridge, Subnet: subnet, IPv6Uplink: ipv6Uplink})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.Paths.Networkd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Paths.Networkd, files[1].Name), files[1].Content, 0o644); err != nil {
		t.Fatal(err)
	}
}

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	root := t.TempDir()
	cfg.Paths = config.Paths{
		Machines: filepath.Join(root, "machines"), Configs: filepath.Join(root, "configs"),
		Storage: filepath.Join(root, "storage"), Nspawn: filepath.Join(root, "nspawn"),
		Machinectl: filepath.Join(root, "machinectl"), Cache: filepath.Join(root, "cache"),
		Scratch: filepath.Join(root, "scratch"), Networkd: filepath.Join(root, "network"),
		Sysctl: filepath.Join(root, "sysctl.d"),
	}
	for _, d := range []string{cfg.Paths.Machines, cfg.Paths.Cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

func TestRun(t *testing.T) {
	tests := []struct {
		name string
		// change breaks one thing of a good host.
		change func(t *testing.T, cfg *config.Config, p *Probes, proc map[string]string)
		// want is the check's name, status and substrings of detail and fix.
		check, detail, fix string
		status             Status
	}{
		{"nspawn ok", nil, "systemd-nspawn", "systemd 252.39-1~deb12u2", "", OK},
		{"nspawn missing", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.LookPath = func(string) (string, error) { return "", errors.New("not found") }
		}, "systemd-nspawn", "not found", "systemd-container", Fail},
		{"nspawn too old", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Output = func(context.Context, string, ...string) ([]byte, error) {
				return []byte("systemd 247 (247.3-7)\n"), nil
			}
		}, "systemd-nspawn", "systemd 247.3-7", "upgrade systemd to 250", Fail},
		{"nspawn odd version", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Output = func(context.Context, string, ...string) ([]byte, error) { return []byte("nspawn x\n"), nil }
		}, "systemd-nspawn", "cannot read the version", "", Warn},
		{"userns ok", nil, "user namespaces", "created (up to 63000", "", OK},
		{"userns disabled", func(t *testing.T, _ *config.Config, _ *Probes, proc map[string]string) {
			proc["sys/user/max_user_namespaces"] = "0\n"
		}, "user namespaces", "max_user_namespaces is 0", "sysctl -w user.max_user_namespaces", Fail},
		{"userns not in kernel", func(t *testing.T, _ *config.Config, _ *Probes, proc map[string]string) {
			delete(proc, "sys/user/max_user_namespaces")
		}, "user namespaces", "does not exist", "CONFIG_USER_NS", Fail},
		{"userns creation fails", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Userns = func(context.Context) error { return errors.New("operation not permitted") }
		}, "user namespaces", "operation not permitted", "CLONE_NEWUSER", Fail},
		{"userns not root", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Geteuid = func() int { return 1000 }
		}, "user namespaces", "needs root", "as root", Warn},
		{"idmap ok", nil, "idmapped mounts", "work on", "", OK},
		{"idmap unsupported", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			p.Idmap = func(_ context.Context, dir string) error { return errors.New("invalid argument") }
		}, "idmapped mounts", "invalid argument", "Linux 5.12", Fail},
		{"yggdrasil ok", nil, "yggdrasil", "subnet 300:2e98:a4b0:1789::/64", "", OK},
		{"yggdrasil from config", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Subnet = func(context.Context) (netip.Prefix, string, error) { return subnet, yggadmin.SubnetFromConfig, nil }
		}, "yggdrasil", "unreachable; using network.ygg_prefix", "yggdrasil", Warn},
		{"yggdrasil down", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Subnet = func(context.Context) (netip.Prefix, string, error) {
				return netip.Prefix{}, "", errors.New("connection refused")
			}
		}, "yggdrasil", "subnet unknown: connection refused", "systemctl enable --now yggdrasil", Fail},
		{"bridge ok", nil, "bridge srvgrp0", "ygg gateway 300:2e98:a4b0:1789::1/128, ULA fc00::f:e:d:c/64", "", OK},
		{"bridge missing", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Links = fakeLinks{}
		}, "bridge srvgrp0", "does not exist", "mbctl host setup", Fail},
		{"bridge not a bridge", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Links = fakeLinks{"srvgrp0": {"dummy", nil}}
		}, "bridge srvgrp0", "is a dummy, not a bridge", "network.bridge", Fail},
		{"bridge without gateway", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Links = fakeLinks{"srvgrp0": {"bridge", []string{"fc00::f:e:d:c/64", "301::1/64"}}}
		}, "bridge srvgrp0", "lacks ygg gateway 300:2e98:a4b0:1789::1/128", "mbctl host setup", Fail},
		{"bridge without anything", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Links = fakeLinks{"srvgrp0": {"bridge", nil}}
		}, "bridge srvgrp0", "lacks ygg gateway 300:2e98:a4b0:1789::1/128 and ULA fc00::f:e:d:c/64", "mbctl host setup", Fail},
		{"bridge, subnet unknown", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Subnet = func(context.Context) (netip.Prefix, string, error) { return netip.Prefix{}, "", errors.New("down") }
		}, "bridge srvgrp0", "ygg gateway is unknown", "yggdrasil", Warn},
		{"other bridge name", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			cfg.Network.Bridge = "br9"
		}, "bridge br9", "br9 does not exist", "mbctl host setup", Fail},
		{"uplink ok", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			cfg.Network.Uplink = "enp3s0"
			l := goodLinks()
			l["enp3s0"] = struct {
				kind  string
				addrs []string
			}{"dummy+up", nil}
			p.Links = l
		}, "uplink enp3s0", "enp3s0 (dummy) for macvlan machines", "", OK},
		{"uplink missing", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			cfg.Network.Uplink = "enp3s0"
		}, "uplink enp3s0", "enp3s0 does not exist", "network.uplink", Fail},
		{"uplink down", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			cfg.Network.Uplink = "enp3s0"
			l := goodLinks()
			l["enp3s0"] = struct {
				kind  string
				addrs []string
			}{"dummy", nil}
			p.Links = l
		}, "uplink enp3s0", "enp3s0 is down", "ip link set enp3s0 up", Warn},
		{"ipv4 uplink ok", nil, "ipv4 uplink", "default route via 198.18.9.1 dev eth0", "", OK},
		{"no ipv4 uplink", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Uplink = func() (uplink.Uplink, error) { return uplink.Uplink{IPv6: dualStack().IPv6}, nil }
		}, "ipv4 uplink", "no IPv4 default route", "default route", Warn},
		{"uplink unreadable", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			p.Uplink = func() (uplink.Uplink, error) { return uplink.Uplink{}, errors.New("netlink: permission denied") }
		}, "ipv6 uplink", "permission denied", "", Warn},
		{"ipv6 uplink ok", nil, "ipv6 uplink", "default route via fe80::1 dev eth0", "", OK},
		{"ipv6 uplink ok, bridge set up for it", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			writeNetwork(t, *cfg, true)
		}, "ipv6 uplink", "default route via fe80::1 dev eth0", "", OK},
		{"ipv6 uplink, bridge set up without", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			writeNetwork(t, *cfg, false)
		}, "ipv6 uplink", "offer the machines no default route (RouterLifetimeSec=0", "mbctl host setup", Warn},
		{"ipv4-only host", func(t *testing.T, _ *config.Config, p *Probes, _ map[string]string) {
			ipv4Only(p)
		}, "ipv6 uplink", "no IPv6 default route (other than onto srvgrp0): no IPv6 to the internet. Machines still get ULA addresses in fc00::/64", "", Absent},
		{"ipv4-only host, set up for it", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			ipv4Only(p)
			writeNetwork(t, *cfg, false)
		}, "ipv6 uplink", "Yggdrasil runs over IPv4, and `machines pull` gives new machines MAN8S_IPV6=optional", "", Absent},
		{"ipv4-only host, bridge set up for IPv6", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			ipv4Only(p)
			writeNetwork(t, *cfg, true)
		}, "ipv6 uplink", "still offer a default route", "mbctl host setup", Warn},
		{"ipv6 uplink configured no", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			cfg.Network.IPv6Uplink = config.IPv6UplinkNo
		}, "ipv6 uplink", "network.ipv6_uplink = no: no IPv6 to the internet", "", Absent},
		{"ipv6 uplink configured yes", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			cfg.Network.IPv6Uplink = config.IPv6UplinkYes
			ipv4Only(p)
		}, "ipv6 uplink", "network.ipv6_uplink = yes", "", OK},
		{"forwarding ok", nil, "forwarding", "net.ipv6.conf.all.forwarding, net.ipv4.ip_forward = 1", "", OK},
		{"ipv6 forwarding off", func(t *testing.T, _ *config.Config, _ *Probes, proc map[string]string) {
			proc["sys/net/ipv6/conf/all/forwarding"] = "0\n"
		}, "forwarding", "net.ipv6.conf.all.forwarding = 0", "mbctl host setup", Fail},
		{"networkd ok", nil, "systemd-networkd", "running (pid 77)", "", OK},
		{"networkd in another namespace only", func(t *testing.T, _ *config.Config, _ *Probes, proc map[string]string) {
			proc["77/ns/net"] = "->net:[4026532000]"
		}, "systemd-networkd", "not running in this network namespace", "systemctl enable --now systemd-networkd", Fail},
		{"busybox configured", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			cfg.Machines.Busybox = staticFile(t)
		}, "static busybox", "busybox", "", OK},
		{"busybox on PATH", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			cfg.Machines.Busybox = "/nonexistent/busybox"
		}, "static busybox", "/usr/bin/busybox (on PATH)", "", OK},
		{"busybox dynamic", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			cfg.Machines.Busybox = "/nonexistent/busybox"
			p.CheckStatic = func(path string) error { return fmt.Errorf("%s is dynamically linked", path) }
		}, "static busybox", "/usr/bin/busybox is dynamically linked", "busybox-static", Warn},
		{"busybox none", func(t *testing.T, cfg *config.Config, p *Probes, _ map[string]string) {
			cfg.Machines.Busybox = ""
			p.LookPath = func(name string) (string, error) {
				if name == "busybox" {
					return "", errors.New("not found")
				}
				return "/usr/bin/" + name, nil
			}
		}, "static busybox", "none found", "busybox-static", Warn},
		{"dirs ok", nil, "directories", "missing but can be created: paths.images, paths.configs", "", OK},
		{"dir is a file", func(t *testing.T, cfg *config.Config, _ *Probes, _ map[string]string) {
			if err := os.WriteFile(cfg.Paths.Configs, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "directories", "is not a directory", "writable directories", Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			proc := goodProc()
			var p Probes
			if tt.change != nil {
				// The proc map is written by goodProbes: change it first.
				p0 := goodProbes(t, map[string]string{})
				tt.change(t, &cfg, &p0, proc)
				p = p0
				p.Proc = fakeProc(t, proc)
			} else {
				p = goodProbes(t, proc)
			}
			results := Run(t.Context(), cfg, p)
			var got *Result
			for i := range results {
				if results[i].Name == tt.check {
					got = &results[i]
				}
			}
			if got == nil {
				t.Fatalf("no result named %q in %+v", tt.check, results)
			}
			if got.Status != tt.status || !strings.Contains(got.Detail, tt.detail) || !strings.Contains(got.Fix, tt.fix) {
				t.Errorf("got %+v\nwant status %v, detail containing %q, fix containing %q", *got, tt.status, tt.detail, tt.fix)
			}
			if (got.Status == Fail && got.Fix == "") || (got.Status == OK && got.Fix != "") {
				t.Errorf("a failure must say how to fix it, a success must not: %+v", *got)
			}
			// Every other check of the good host passes.
			for _, r := range results {
				if r.Name != tt.check && r.Status != OK && tt.change == nil {
					t.Errorf("on a good host %q is %v: %+v", r.Name, r.Status, r)
				}
			}
		})
	}
}

func TestFailed(t *testing.T) {
	if n := Failed([]Result{{Status: OK}, {Status: Warn}, {Status: Fail}, {Status: Absent}, {Status: Fail}}); n != 2 {
		t.Errorf("Failed = %d, want 2", n)
	}
}

func TestStatusJSON(t *testing.T) {
	for s, want := range map[Status]string{OK: "ok", Warn: "warn", Fail: "fail", Absent: "absent"} {
		if b, err := json.Marshal(s); err != nil || string(b) != `"`+want+`"` {
			t.Errorf("json.Marshal(%v) = %s, %v; want %q", int(s), b, err, want)
		}
	}
}

func TestNetworkdPID(t *testing.T) {
	proc := fakeProc(t, map[string]string{
		"self/ns/net": "->net:[1]",
		"10/comm":     "systemd-network\n", "10/ns/net": "->net:[2]",
		"11/comm": "bash\n", "11/ns/net": "->net:[1]",
		"12/comm": "systemd-network\n", "12/ns/net": "->net:[1]",
		"notapid/comm": "systemd-network\n",
	})
	if pid, err := NetworkdPID(proc); err != nil || pid != 12 {
		t.Errorf("NetworkdPID = %d, %v; want 12", pid, err)
	}
	if _, err := NetworkdPID(t.TempDir()); err == nil {
		t.Error("NetworkdPID without self/ns/net: no error")
	}
}

// The real probes, where they can run: a user namespace and an idmapped
// mount of a temp dir (never attached, so nothing to clean up).
func TestRealProbes(t *testing.T) {
	ci.RequireRoot(t, "user namespaces and idmapped mounts")
	if err := ProbeIdmap(t.Context(), t.TempDir()); err != nil {
		t.Errorf("ProbeIdmap on a temp dir: %v", err)
	}
	if err := ProbeIdmap(t.Context(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ProbeIdmap on a missing dir: no error")
	}
}

// The gzip engine is a property of the build: reported, never a failure.
func TestCheckGzip(t *testing.T) {
	for _, tt := range []struct {
		engine string
		fast   bool
		want   string
	}{
		{"isa-l", true, "isa-l"},
		{"klauspost/compress", false, "klauspost/compress (pure Go; for faster pulls, rebuild mbctl with ISA-L"},
	} {
		r := checkGzip(tt.engine, tt.fast)
		if r.Status != OK || !strings.HasPrefix(r.Detail, tt.want) || r.Name != "gzip decompression" {
			t.Errorf("checkGzip(%q, %v) = %+v, want OK with %q", tt.engine, tt.fast, r, tt.want)
		}
	}
}
