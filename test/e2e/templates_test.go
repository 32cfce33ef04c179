package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// fetchVia gets url over connections that dial makes (from a namespace
// other than the test's), in 3 s at most.
func fetchVia(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}

// waitFetch waits until url answers want through dial.
func waitFetch(t *testing.T, run *runningMachine, dial func(context.Context, string, string) (net.Conn, error), url, want string) {
	t.Helper()
	var last error
	ok := poll(30*time.Second, run.done, func() bool {
		body, err := fetchVia(t.Context(), dial, url)
		if err == nil && !strings.Contains(body, want) {
			err = fmt.Errorf("body %q lacks %q", body, want)
		}
		last = err
		return err == nil
	})
	if !ok {
		t.Fatalf("GET %s: %v\n%s", url, last, run.output())
	}
}

// webImage pushes a busybox image whose app is script, as ref.
func webImage(t *testing.T, reg *registry.Registry, ref, script string) string {
	t.Helper()
	layer, err := ociimage.Layer(ociimage.File("app.sh", []byte(script), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{Entrypoint: []string{"/bin/sh", "/app.sh"}, Env: []string{ociimage.DefaultPath}}, layer)
	if err != nil {
		t.Fatal(err)
	}
	ref = reg.Addr() + "/" + ref
	pushT(t, img, ref)
	return ref
}

// Proof (issue 15, template macvlan): a machine on a macvlan of the
// testbed host's uplink gets IPv4 from the LAN's DHCP server and an IPv6
// SLAAC address from the LAN's router advertisements, and answers there
// from the LAN; it keeps its Yggdrasil address on host0, where the host
// reaches it, and host0 takes nothing from the bridge but that.
func TestTemplateMacvlan(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	h := testbed.NewHostT(t, testbed.Options{})
	lan := testbed.NewLANT(t, h, testbed.LANOptions{})
	m := wrapMachineHost(t, h)
	reg := registry.StartT(t, registry.Options{})
	ref := webImage(t, reg, "apps/web:1", webApp)

	// Without an uplink the pull says what to give.
	out, err := m.mbctl(t.Context(), "machines", "pull", "--yes", "--quiet", "--template", "macvlan", ref, "lanweb").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--uplink IFACE or set network.uplink") {
		t.Fatalf("pull without an uplink: %v\n%s", err, out)
	}
	m.mustMbctl(t, "machines", "pull", "--yes", "--quiet", "--template", "macvlan", "--uplink", lan.Uplink, ref, "lanweb")
	settings := readFileT(t, m.mb.Dir+"/configs/lanweb/container.nspawn")
	for _, want := range []string{"MACVLAN=" + lan.Uplink + "\n", "VirtualEthernet=yes\n", "Bridge=" + h.Bridge + "\n"} {
		if !strings.Contains(settings, want) {
			t.Errorf("settings lack %q:\n%s", want, settings)
		}
	}

	if out := m.mustMbctl(t, "machines", "check", "lanweb"); !strings.Contains(out, "macvlan uplink "+lan.Uplink) {
		t.Errorf("machines check does not check the uplink:\n%s", out)
	}

	run := m.startRun(t, "lanweb")
	waitFor(t, "the app to start", func() bool { return strings.Contains(run.output(), "man8s-init: app: starting") })
	console := run.output()
	mv := "mv-" + lan.Uplink
	for _, want := range []string{
		"man8s-init: check: ipv4 ok on " + mv + ", ipv6 ok on " + mv + ", ygg ok on host0",
		"man8s-init: link: host0 up for the Yggdrasil address only",
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	ipv4 := netip.MustParseAddr(regexpFind(t, console, `man8s-init: dhcp: (\S+)/\d+ router`))
	if !lan.IPv4.Contains(ipv4) || ipv4 == lan.IPv4.Addr() {
		t.Errorf("leased %s, not an address of the LAN %s", ipv4, lan.IPv4)
	}
	ipv6 := netip.MustParseAddr(regexpFind(t, console, `man8s-init: ipv6: (\S+)/64 `))
	if !lan.IPv6.Masked().Contains(ipv6) {
		t.Errorf("SLAAC gave %s, not an address of the LAN's prefix %s", ipv6, lan.IPv6.Masked())
	}
	ygg, err := yggaddr.Address(h.Ygg.Subnet, "lanweb")
	if err != nil {
		t.Fatal(err)
	}

	// From the LAN on both of its LAN addresses; from the host on its
	// Yggdrasil address.
	waitFetch(t, run, lan.DialContext, fmt.Sprintf("http://%s/", ipv4), "hello from lanweb")
	waitFetch(t, run, lan.DialContext, fmt.Sprintf("http://[%s]/", ipv6), "hello from lanweb")
	waitFetch(t, run, h.DialContext, fmt.Sprintf("http://[%s]/", ygg), "hello from lanweb")

	// host0 holds the Yggdrasil address and no address from the bridge;
	// the only default routes go out of the macvlan.
	host0 := m.mustMbctl(t, "machines", "shell", "lanweb", "--", "ip", "-o", "addr", "show", "dev", "host0")
	if !strings.Contains(host0, ygg.String()) || strings.Contains(host0, "inet ") || strings.Contains(host0, "fc00:") {
		t.Errorf("host0 addresses:\n%s", host0)
	}
	for _, family := range []string{"-4", "-6"} {
		routes := m.mustMbctl(t, "machines", "shell", "lanweb", "--", "ip", family, "route", "show", "default")
		if !strings.Contains(routes, "dev "+mv) || strings.Contains(routes, "host0") {
			t.Errorf("ip %s default routes:\n%s", family, routes)
		}
	}
	// The host's end of the LAN took nothing from the LAN's router.
	if err := h.InNetns(func() error {
		ifc, err := net.InterfaceByName(lan.Uplink)
		if err != nil {
			return err
		}
		addrs, err := ifc.Addrs()
		for _, a := range addrs {
			if p, perr := netip.ParsePrefix(a.String()); perr == nil && !p.Addr().IsLinkLocalUnicast() {
				t.Errorf("the host's %s has %s", lan.Uplink, p)
			}
		}
		return err
	}); err != nil {
		t.Error(err)
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}
}

// hostNetApp lists its network namespace's links and serves HTTP on a port
// above 1024 (its root is not the host's: it may not bind below 1024).
const hostNetApp = `#!/bin/sh
cat /proc/net/dev
mkdir -p /www
echo "hello from $MAN8S_CONTAINER_NAME" > /www/index.html
exec httpd -f -p 127.0.0.1:18080 -h /www
`

// Proof (issue 15, template host_network): the machine shares the testbed
// host's network namespace (it sees the host's bridge, and answers on the
// host's loopback), man8s-init sets up nothing and says so, and mbctl
// claims no address of its own for it.
func TestTemplateHostNetwork(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	h := testbed.NewHostT(t, testbed.Options{})
	m := wrapMachineHost(t, h)
	reg := registry.StartT(t, registry.Options{})
	ref := webImage(t, reg, "apps/hostnet:1", hostNetApp)
	m.mustMbctl(t, "machines", "pull", "--yes", "--quiet", "--template", "host_network", ref, "hostweb")
	env := readFileT(t, m.mb.Dir+"/configs/hostweb/man8env.env")
	if !strings.Contains(env, "MAN8S_CONTAINER_TEMPLATE=host_network\n") || strings.Contains(env, "MAN8S_YGGDRASIL_ADDRESS") {
		t.Errorf("man8env.env of a host_network machine:\n%s", env)
	}

	run := m.startRun(t, "hostweb")
	waitFor(t, "the app to start", func() bool { return strings.Contains(run.output(), "man8s-init: app: starting") })
	console := run.output()
	if !strings.Contains(console, "man8s-init: network: skipped: template host_network shares the host's network") {
		t.Errorf("console lacks the skipped network step:\n%s", console)
	}
	for _, bad := range []string{"man8s-init: dhcp:", "man8s-init: check:", "man8s-init: forward:"} {
		if strings.Contains(console, bad) {
			t.Errorf("console has %q:\n%s", bad, console)
		}
	}
	waitFor(t, "the app to list the links", func() bool { return strings.Contains(run.output(), h.Bridge+":") })
	waitFetch(t, run, h.DialContext, "http://127.0.0.1:18080/", "hello from hostweb")

	var show struct {
		YggAddress *string `json:"ygg_address"`
		Template   string  `json:"template"`
	}
	if err := json.Unmarshal([]byte(m.mustMbctl(t, "machines", "show", "--json", "hostweb")), &show); err != nil {
		t.Fatal(err)
	}
	if show.YggAddress != nil || show.Template != "host_network" {
		t.Errorf("show --json: ygg_address %v, template %q; want none and host_network", show.YggAddress, show.Template)
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}
}

// regexpFind returns the first submatch of re in s.
func regexpFind(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %q in:\n%s", re, s)
	}
	return m[1]
}
