package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// ulaApp waits for its fc00::/64 SLAAC address, prints it and its IPv6
// default route, and serves "ula-ok" on [::]:8080. With TARGET set it
// first fetches http://[TARGET]:8080/ and prints what it got.
const ulaApp = `until a=$(ip -6 addr show dev host0 scope global | grep -o 'inet6 fc00::[0-9a-f:]*'); do sleep 0.1; done
echo "ula=${a#inet6 }"
echo "v6default=$(ip -6 route show default)."
if [ -n "$TARGET" ]; then
  until printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 "$TARGET" 8080 >/tmp/page && grep -q ula-ok /tmp/page; do sleep 0.2; done
  echo "fetched $(grep ula-ok /tmp/page) from $TARGET"
fi
mkdir -p /www && echo ula-ok > /www/index.html
exec httpd -f -p [::]:8080 -h /www`

// hostCheckJSON is `host check --json`.
type hostCheckJSON struct {
	OK     bool `json:"ok"`
	Failed int  `json:"failed"`
	Checks []struct {
		Name, Status, Detail, Fix string
	} `json:"checks"`
}

func (r hostCheckJSON) check(name string) (status, detail, fix string) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status, c.Detail, c.Fix
		}
	}
	return "", "", ""
}

// v4Host is a testbed host set up by `mbctl host setup`, with a
// configuration that probes its uplink (network.ipv6_uplink = auto).
type v4Host struct {
	*machineHost
	sysctlDir string
	// proxy is where the registry is reached from inside the host.
	proxy string
}

// Proof (issue 15, IPv4-only hosts): on a host whose uplink has only IPv4,
// `host setup` gives the bridge RAs without default route and `host check`
// passes with the IPv6 uplink reported as absent; a pulled machine gets
// MAN8S_IPV6=optional, starts, gets its ULA address (and no IPv6 default
// route), reaches another machine over ULA and is reached on its ygg
// address. Once the host gains IPv6, check warns that the RAs do not fit,
// a second setup restores the default route, check says ok, and a pull
// writes no MAN8S_IPV6.
func TestIPv4OnlyHost(t *testing.T) {
	testbed.RequireT(t, "dbus-daemon", "busctl", "networkctl", "systemd-nspawn", "nsenter", "unshare", busybox)
	h := testbed.NewHostT(t, testbed.Options{NoBridge: true, Uplink: testbed.Uplink{IPv4: true}})
	reg := registry.StartT(t, registry.Options{})
	v := newV4Host(t, h, reg.Addr())

	script, err := ociimage.Layer(ociimage.File("app.sh", []byte(ulaApp), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{Entrypoint: []string{"/bin/sh", "/app.sh"}, Env: []string{ociimage.DefaultPath}}, script)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, img, reg.Addr()+"/v4/ula:1")
	ref := v.proxy + "/v4/ula:1"
	network := filepath.Join(h.NetworkDir, "80-man8s-srvgrp0.network")

	// Setup: the dry run shows the RAs without default route.
	code, out := v.mbctlOut(t, "host", "setup", "--dry-run")
	if code != 0 || !strings.Contains(out, "    [IPv6SendRA]\n    # This host has no IPv6 uplink") || !strings.Contains(out, "    RouterLifetimeSec=0\n") ||
		!strings.Contains(out, "notice: this host has no IPv6 uplink (no IPv6 default route): srvgrp0's router advertisements would offer no default route") {
		t.Errorf("host setup --dry-run: exit status %d, output:\n%s", code, out)
	}
	v.setup(t)
	if data := readFileT(t, network); !strings.Contains(data, "\nRouterLifetimeSec=0\n") {
		t.Errorf("%s lacks RouterLifetimeSec=0:\n%s", network, data)
	}

	// Check: passes, IPv6 absent.
	rep, code := v.hostCheck(t)
	if code != 0 || !rep.OK || rep.Failed != 0 {
		t.Errorf("host check on the IPv4-only host: exit status %d, ok %v, failed %d", code, rep.OK, rep.Failed)
	}
	if st, detail, _ := rep.check("ipv4 uplink"); st != "ok" || detail != "default route via 198.18.250.1 dev wan0" {
		t.Errorf("ipv4 uplink: %s %q", st, detail)
	}
	if st, detail, fix := rep.check("ipv6 uplink"); st != "absent" || fix != "" ||
		!strings.HasPrefix(detail, "no IPv6 default route (other than onto srvgrp0): no IPv6 to the internet. Machines still get ULA addresses") {
		t.Errorf("ipv6 uplink: %s %q (fix %q), want absent", st, detail, fix)
	}
	_, out = v.mbctlOut(t, "host", "check")
	if line := checkLine(out, "ipv6 uplink"); !strings.HasPrefix(line, "- ipv6 uplink: no IPv6 default route") {
		t.Errorf("ipv6 uplink line = %q, want - (absent)", line)
	}

	// Machines: optional IPv6, a ULA address without default route, ULA
	// between them, reached on the ygg address.
	out = v.pull(t, ref, "srv4")
	if !strings.Contains(out, "notice: this host has no IPv6 uplink (no IPv6 default route): machine srv4 got MAN8S_IPV6=optional") {
		t.Errorf("pull srv4 said:\n%s", out)
	}
	env := readFileT(t, filepath.Join(v.work, "configs/srv4/man8env.env"))
	if !strings.Contains(env, "\n# The host had no IPv6 uplink at pull (no IPv6 default route): the machine has no IPv6\n") || !strings.Contains(env, "\nMAN8S_IPV6=optional\n") {
		t.Errorf("srv4's man8env.env:\n%s", env)
	}
	srv := v.startRun(t, "srv4")
	if r := v6Default(t, srv); r != "" {
		t.Errorf("srv4 has an IPv6 default route: %s", r)
	}
	m := regexp.MustCompile(`ula=(fc00::[0-9a-f:]+)`).FindStringSubmatch(srv.output())
	if m == nil {
		t.Fatalf("srv4 printed no ULA address:\n%s", srv.output())
	}
	srvULA := netip.MustParseAddr(m[1])
	if want := "man8s-init: check: ipv4 ok, ipv6 absent (optional), ygg ok"; !strings.Contains(srv.output(), want) {
		t.Errorf("srv4's output lacks %q:\n%s", want, srv.output())
	}

	v.pull(t, ref, "cli4", "--env", "TARGET="+srvULA.String())
	cli := v.startRun(t, "cli4")
	if r := v6Default(t, cli); r != "" {
		t.Errorf("cli4 has an IPv6 default route: %s", r)
	}
	waitForOutput(t, cli, "fetched ula-ok from "+srvULA.String())
	if body := v.getYgg(t, "srv4"); body != "ula-ok" {
		t.Errorf("srv4 on its ygg address answered %q", body)
	}

	// The host gains IPv6: check warns, setup restores the default route.
	if err := h.AddUplink(testbed.Uplink{IPv6: true}); err != nil {
		t.Fatal(err)
	}
	rep, code = v.hostCheck(t)
	if st, detail, fix := rep.check("ipv6 uplink"); code != 0 || st != "warn" || !strings.Contains(detail, "default route via fe80::1 dev wan0, but srvgrp0's router advertisements offer the machines no default route") ||
		!strings.Contains(fix, "mbctl host setup") {
		t.Errorf("ipv6 uplink after the host gained IPv6: exit status %d, %s %q (fix %q)", code, st, detail, fix)
	}
	code, out = v.mbctlOut(t, "host", "setup", "--dry-run")
	if code != 0 || !strings.Contains(out, "would update "+network+", changing:\n") || !strings.Contains(out, "    -RouterLifetimeSec=0\n") || strings.Contains(out, "notice: this host has no IPv6 uplink") {
		t.Errorf("host setup --dry-run with IPv6: exit status %d:\n%s", code, out)
	}
	v.setup(t)
	if data := readFileT(t, network); strings.Contains(data, "RouterLifetimeSec") {
		t.Errorf("%s still has RouterLifetimeSec:\n%s", network, data)
	}
	rep, code = v.hostCheck(t)
	if st, detail, _ := rep.check("ipv6 uplink"); code != 0 || !rep.OK || st != "ok" || detail != "default route via fe80::1 dev wan0" {
		t.Errorf("ipv6 uplink after the second setup: exit status %d, %s %q", code, st, detail)
	}
	if out := v.pull(t, ref, "dual4"); strings.Contains(out, "MAN8S_IPV6") {
		t.Errorf("pull on the dual-stack host mentions MAN8S_IPV6:\n%s", out)
	}
	if env := readFileT(t, filepath.Join(v.work, "configs/dual4/man8env.env")); strings.Contains(env, "MAN8S_IPV6") {
		t.Errorf("dual4's man8env.env has MAN8S_IPV6:\n%s", env)
	}
	// Its RAs offer a default route again: MAN8S_IPV6 (required) is met.
	dual := v.startRun(t, "dual4")
	if r := v6Default(t, dual); !strings.HasPrefix(r, "default via fe80::") {
		t.Errorf("dual4's IPv6 default route = %q, want one via the bridge", r)
	}
	if want := "man8s-init: check: ipv4 ok, ipv6 ok, ygg ok"; !strings.Contains(dual.output(), want) {
		t.Errorf("dual4's output lacks %q:\n%s", want, dual.output())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("srv4:\n%s\ncli4:\n%s\ndual4:\n%s", srv.output(), cli.output(), dual.output())
		}
	})
}

// v6Default waits for ulaApp's line about its IPv6 default route and
// returns the route ("" for none).
func v6Default(t *testing.T, r *runningMachine) string {
	t.Helper()
	re := regexp.MustCompile(`v6default=(.*)\.\r?\n`) // the console may end lines with \r\n
	var m []string
	waitFor(t, "the app's IPv6 default route", func() bool { m = re.FindStringSubmatch(r.output()); return m != nil })
	return strings.TrimSpace(m[1])
}

// newV4Host writes an mbctl configuration for h whose every path is in a
// temp dir, host setup's included, and makes registry reachable inside h
// at v.proxy.
func newV4Host(t *testing.T, h *testbed.Host, registry string) *v4Host {
	t.Helper()
	work := t.TempDir()
	v := &v4Host{sysctlDir: filepath.Join(work, "sysctl.d")}
	conf := filepath.Join(work, "mbctl.toml")
	extra := fmt.Sprintf("networkd = %q\nsysctl = %q\n[network]\nygg_admin = %q\nipv4 = %q\nipv6_uplink = \"auto\"\n", h.NetworkDir, v.sysctlDir, h.YggAdmin, h.IPv4)
	if err := os.WriteFile(conf, []byte(testbed.MbctlConfig(work, "/run/systemd/nspawn", extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(work, "nspawn"), 0o755); err != nil {
		t.Fatal(err)
	}
	v.machineHost = &machineHost{Host: h, work: work, mb: &testbed.Mbctl{Host: h, Bin: bins.mbctl, Dir: work, Config: conf}}
	v.proxy = forwardInto(t, h, registry)
	return v
}

// mbctlOut runs mbctl in the host and returns its exit status and output.
func (v *v4Host) mbctlOut(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return exitAndOutput(t, v.mb.Command(ctx, args...), args)
}

// setup runs `host setup` (the bridge's IPv4 subnet is the testbed's,
// by network.ipv4) and waits for the bridge.
func (v *v4Host) setup(t *testing.T) {
	t.Helper()
	code, out := v.mbctlOut(t, "host", "setup")
	t.Logf("host setup:\n%s", out)
	if code != 0 {
		t.Fatalf("host setup: exit status %d", code)
	}
	network := filepath.Join(v.NetworkDir, "80-man8s-srvgrp0.network")
	if data := readFileT(t, network); !strings.Contains(data, "\nAddress="+v.IPv4.String()+"\n") {
		t.Fatalf("%s lacks network.ipv4 %s:\n%s", network, v.IPv4, data)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := v.WaitAddrs(ctx, v.Bridge, v.IPv4.Addr(), v.ULA.Addr(), v.YggGateway()); err != nil {
		t.Fatalf("after host setup: %v", err)
	}
}

// hostCheck runs `host check --json`.
func (v *v4Host) hostCheck(t *testing.T) (hostCheckJSON, int) {
	t.Helper()
	code, out := v.mbctlOut(t, "host", "check", "--json")
	var rep hostCheckJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("host check --json: exit status %d, %v:\n%s", code, err, out)
	}
	for _, c := range rep.Checks {
		t.Logf("host check: %s %s: %s %s", c.Status, c.Name, c.Detail, c.Fix)
	}
	return rep, code
}

// pull pulls ref as name inside the host, where the uplink is probed
// (Mbctl.Command would pull in the test's own namespace), and returns
// the output.
func (v *v4Host) pull(t *testing.T, ref, name string, args ...string) string {
	t.Helper()
	argv := testbed.NspawnDirArgs(filepath.Join(v.work, "nspawn"),
		append(append([]string{bins.mbctl, "--config", v.mb.Config, "machines", "pull", "--quiet", "--yes", "--no-probe"}, args...), ref, name)...)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	out, err := v.Command(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("machines pull %s %s: %v\n%s", ref, name, err, out)
	}
	return string(out)
}

// forwardInto listens on loopback inside h and forwards each connection
// to target in the test's own namespace (a registry there), so that a
// command run inside h reaches it; it returns the address inside h.
func forwardInto(t *testing.T, h *testbed.Host, target string) string {
	t.Helper()
	l, err := h.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				d, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer d.Close()
				done := make(chan struct{})
				go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, d)
				c.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	return l.Addr().String()
}
