package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// Proof (issue 4, the whole scenario on one host): the real registry,
// packaged as an image, becomes machine Man8Registry; from the host, an
// image is pushed into it over its Yggdrasil address and pulled back with
// mbctl oci download; shell shows the pushed data and the ygg address;
// after the stop the data is in the machine's storage dir, and remove
// clears everything.
func TestScenarioRegistryMachine(t *testing.T) {
	testbed.RequireT(t, "docker-registry")
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/library/registry:latest"
	regImg, err := ociimage.RegistryApp(t.Context(), busybox)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, regImg, ref)

	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "Man8Registry", "--volume", "/var/lib/registry=data")
	addr, err := yggaddr.Address(m.Ygg.Subnet, "Man8Registry")
	if err != nil {
		t.Fatal(err)
	}
	run := m.startRun(t, "Man8Registry")

	// The registry answers on the machine's ygg address from the host.
	endpoint := netip.AddrPortFrom(addr, 5000).String()
	hello := markedImage(t, "hello from the host", "")
	waitFor(t, "the registry machine to accept a push on "+endpoint, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := ociimage.Push(ctx, hello, endpoint+"/demo/hello:1", ociimage.WithDialer(m.DialContext), ociimage.WithPlainHTTP())
		return err == nil
	})

	// mbctl pulls it back from the machine it created, over Yggdrasil.
	dlConf := writeConfig(t, t.TempDir(), fmt.Sprintf("[registries]\ninsecure = [%q]\n", endpoint))
	dest := filepath.Join(t.TempDir(), "hello")
	if out, err := m.Command(t.Context(), bins.mbctl, "--config", dlConf, "oci", "download", "--quiet", endpoint+"/demo/hello:1", dest).CombinedOutput(); err != nil {
		t.Fatalf("mbctl oci download from the machine: %v\n%s\nmachine:\n%s", err, out, run.output())
	}
	if got := readMarker(t, dest); got != "hello from the host" {
		t.Errorf("downloaded marker = %q", got)
	}

	if out := m.mustMbctl(t, "machines", "shell", "Man8Registry", "--", "ls", "/var/lib/registry/docker/registry/v2/repositories"); !strings.Contains(out, "demo") {
		t.Errorf("shell ls of the registry's data: %q", out)
	}
	if out := m.mustMbctl(t, "machines", "shell", "--network-only", "Man8Registry", "--", "ip", "-6", "addr"); !strings.Contains(out, addr.String()) {
		t.Errorf("--network-only ip -6 addr lacks %s:\n%s", addr, out)
	}

	run.stop(t)
	data := filepath.Join(m.work, "storage/Man8Registry/var/lib/registry/docker/registry/v2/repositories/demo/hello")
	if _, err := os.Stat(data); err != nil {
		t.Errorf("the pushed image is not in the machine's storage dir on the host: %v", err)
	}
	m.mustMbctl(t, "machines", "remove", "--yes", "Man8Registry")
	for _, d := range []string{"machines", "configs", "storage", "machinectl"} {
		if ents, _ := os.ReadDir(filepath.Join(m.work, d)); len(ents) > 0 {
			t.Errorf("%s not empty after remove: %v", d, ents)
		}
	}
}

// whoamiCGI answers with the address the request came from.
const whoamiCGI = `#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nseen-from %s\n' "$REMOTE_ADDR"
`

// Proof (issue 4, two hosts): hosts A and B run yggdrasil peered over a
// veth link. A machine on A fetches a page from a machine on B at
// B-machine's ygg address, and B sees A-machine's ygg address as the
// source: the mesh is the fabric between Man8S hosts.
func TestScenarioTwoHosts(t *testing.T) {
	x := startAcrossHosts(t, "web", "client", ociimage.AppConfig{Entrypoint: []string{"httpd", "-f", "-p", "[::]:80", "-h", "/www"}})
	want := "seen-from [" + x.clientAddr.String() + "]"
	if !strings.Contains(x.client.output(), want) {
		t.Errorf("B saw the request from another address; want %q:\n%s", want, x.client.output())
	}
}

// acrossHosts is a pair of testbed hosts with a web machine on B, serving
// whoamiCGI, and a client machine on A that has fetched its page over the
// mesh, from the web machine's ygg address.
type acrossHosts struct {
	a, b                *machineHost
	webAddr, clientAddr netip.Addr
	web, client         *runningMachine
}

// startAcrossHosts pulls and starts the two machines, the web one from an
// image of busybox with whoamiCGI and cfg, and waits until the client has
// the page.
func startAcrossHosts(t *testing.T, web, client string, cfg ociimage.AppConfig) acrossHosts {
	t.Helper()
	testbed.RequireT(t, "systemd-nspawn", "nsenter", "unshare", busybox)
	a, b := testbed.NewPairT(t, testbed.Options{}, testbed.Options{})
	x := acrossHosts{a: wrapMachineHost(t, a), b: wrapMachineHost(t, b)}
	reg := registry.StartT(t, registry.Options{})

	cgi, err := ociimage.Layer(ociimage.File("www/cgi-bin/whoami", []byte(whoamiCGI), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ociimage.BusyboxApp(busybox, cfg, cgi)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, server, reg.Addr()+"/demo/"+web+":1")
	if x.webAddr, err = yggaddr.Address(b.Ygg.Subnet, web); err != nil {
		t.Fatal(err)
	}
	if x.clientAddr, err = yggaddr.Address(a.Ygg.Subnet, client); err != nil {
		t.Fatal(err)
	}
	// busybox nc, not wget: Debian's static busybox wget crashes.
	fetch := fmt.Sprintf(`until printf 'GET /cgi-bin/whoami HTTP/1.0\r\n\r\n' | nc -w 2 %s 80 >/tmp/page && grep -q seen-from /tmp/page; do sleep 0.2; done; cat /tmp/page; exec sleep 1000`, x.webAddr)
	fetcher, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{Entrypoint: []string{"/bin/sh", "-c", fetch}})
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, fetcher, reg.Addr()+"/demo/"+client+":1")

	x.b.mustMbctl(t, "machines", "pull", "--quiet", "--yes", reg.Addr()+"/demo/"+web+":1", web)
	x.a.mustMbctl(t, "machines", "pull", "--quiet", "--yes", reg.Addr()+"/demo/"+client+":1", client)
	x.web = x.b.startRun(t, web)
	x.client = x.a.startRun(t, client)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("machine %s on B:\n%s\nmachine %s on A:\n%s", web, x.web.output(), client, x.client.output())
		}
	})
	waitFor(t, "the client on A to fetch the page from B", func() bool { return strings.Contains(x.client.output(), "\nseen-from ") })
	return x
}
