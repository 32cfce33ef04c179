package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// udpExchange sends a datagram to addr from namespace h and returns the
// first answer, waiting a second at most.
func udpExchange(ctx context.Context, h *testbed.Host, addr string) (string, error) {
	c, err := h.DialContext(ctx, "udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 512)
	n, err := c.Read(b)
	return string(b[:n]), err
}

// Proof (issue 15, publishing on the host): a machine pulled with
// --publish 8080:80 -p 5300/udp answers an outside client, a second network
// namespace linked to the testbed host by a veth (198.18.7.2 ->
// 198.18.7.1:8080, fc00::7:2 -> [fc00::7:1]:8080, and UDP to :5300), which
// nspawn's Port= DNATs to the machine; over IPv4 the app sees the client's
// own address. The host itself reaches the port on its own non-loopback
// addresses, not on 127.0.0.1 or [::1], where a host service on the same
// port keeps its clients; a link-local client gets no route. A second,
// IPv4-only machine is reached over IPv6 through man8s-init's forwarder; it
// cannot take the first one's host port, and neither can a clone, which
// copies no Port= line. After unpublish --all and a restart the port is
// closed from outside. What each client gets is logged (see README,
// "Publishing ports on the host").
func TestPublishPort(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	web, err := ociimage.Layer(ociimage.File("www/cgi-bin/whoami", []byte(whoamiCGI), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	// httpd on [::]:80, and a UDP responder on [::]:5300.
	udpecho := filepath.Join(t.TempDir(), "udpecho")
	build := exec.Command("go", "build", "-trimpath", "-o", udpecho, "./testdata/udpecho")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building udpecho: %v\n%s", err, out)
	}
	echoBin, err := os.ReadFile(udpecho)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := ociimage.Layer(ociimage.File("usr/bin/udpecho", echoBin, 0o755))
	if err != nil {
		t.Fatal(err)
	}
	server, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "-c", "httpd -f -p 80 -h /www & exec /usr/bin/udpecho 5300"},
	}, web, udp)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, server, reg.Addr()+"/demo/pubweb:1")
	server4, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint:   []string{"httpd", "-f", "-p", "0.0.0.0:80", "-h", "/www"},
		ExposedPorts: []string{"80/tcp"},
	}, web)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, server4, reg.Addr()+"/demo/pubweb4:1")
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", reg.Addr()+"/demo/pubweb4:1", "pubweb4")
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", "--publish", "8080:80", "-p", "5300/udp", reg.Addr()+"/demo/pubweb:1", "pubweb")
	if show := m.mustMbctl(t, "machines", "show", "pubweb"); !strings.Contains(show, "Published:    8080 -> 80/tcp, 5300 -> 5300/udp") || !strings.Contains(show, "Port=tcp:8080:80") {
		t.Errorf("machines show does not list the published port:\n%s", show)
	}

	hostAddr4, clientAddr4 := netip.MustParsePrefix("198.18.7.1/30"), netip.MustParsePrefix("198.18.7.2/30")
	// IPv6: link-local addresses, and a /112 of the ULA prefix (the only
	// IPv6 range the tests may use besides the ygg subnet).
	hostLL, clientLL := netip.MustParsePrefix("fe80::7:1/64"), netip.MustParsePrefix("fe80::7:2/64")
	hostAddr6, clientAddr6 := netip.MustParsePrefix("fc00::7:1/112"), netip.MustParsePrefix("fc00::7:2/112")
	client := testbed.NewClientT(t, m.Host, testbed.ClientOptions{
		HostAddrs: []netip.Prefix{hostAddr4, hostLL, hostAddr6}, ClientAddrs: []netip.Prefix{clientAddr4, clientLL, clientAddr6},
	})

	run := m.startRun(t, "pubweb")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("machine pubweb:\n%s", run.output())
			if nft, err := exec.LookPath("nft"); err == nil {
				out, _ := m.Command(context.Background(), nft, "list", "ruleset").CombinedOutput()
				t.Logf("nft list ruleset in the testbed host:\n%s", out)
			}
		}
	})
	page := "http://" + hostAddr4.Addr().String() + ":8080/cgi-bin/whoami"
	var last string
	var lastErr error
	if !poll(60*time.Second, nil, func() bool {
		last, lastErr = fetchVia(t.Context(), client.DialContext, page)
		return lastErr == nil
	}) {
		t.Fatalf("the outside client did not get %s: %v %s", page, lastErr, last)
	}
	if want := clientAddr4.Addr().String() + "]"; !strings.Contains(last, want) { // [::ffff:198.18.7.2]: httpd listens on [::]
		t.Errorf("outside client: the app saw %q, want %q (DNAT keeps the client's address)", last, want)
	}
	t.Logf("outside client -> %s: %q", page, strings.TrimSpace(last))
	if nft, err := exec.LookPath("nft"); err == nil {
		out, _ := m.Command(t.Context(), nft, "list", "ruleset").CombinedOutput()
		t.Logf("nft list ruleset in the testbed host while the machine runs:\n%s", out)
	}

	// UDP: a datagram to the host's port reaches the machine's responder.
	var udpGot string
	waitFor(t, "a UDP answer through the published 5300/udp", func() bool {
		udpGot, err = udpExchange(t.Context(), client, hostAddr4.Addr().String()+":5300")
		return err == nil && strings.Contains(udpGot, "udp-pong")
	})
	if want := clientAddr4.Addr().String() + ":"; !strings.Contains(udpGot, want) {
		t.Errorf("UDP: the app saw %q, want the client's address %s", udpGot, want)
	}
	t.Logf("outside client -> %s:5300/udp: %q", hostAddr4.Addr(), strings.TrimSpace(udpGot))

	// What the host itself and others get: logged as measured, and
	// checked against what the README says.
	for _, tc := range []struct {
		what, url string
		dial      func(context.Context, string, string) (net.Conn, error)
		reach     bool
	}{
		{"host -> its bridge address", "http://" + m.IPv4.Addr().String() + ":8080/cgi-bin/whoami", m.DialContext, true},
		{"host -> its address on the client link", "http://" + hostAddr4.Addr().String() + ":8080/cgi-bin/whoami", m.DialContext, true},
		{"host -> 127.0.0.1", "http://127.0.0.1:8080/cgi-bin/whoami", m.DialContext, false},
		{"host -> [::1]", "http://[::1]:8080/cgi-bin/whoami", m.DialContext, false},
		{"host -> its ULA address", "http://[" + m.ULA.Addr().String() + "]:8080/cgi-bin/whoami", m.DialContext, true},
		{"outside client -> the host's IPv6", "http://[" + hostAddr6.Addr().String() + "]:8080/cgi-bin/whoami", client.DialContext, true},
		// The kernel does not forward a packet from a link-local address.
		{"outside client -> the host's link-local IPv6", "http://[" + hostLL.Addr().String() + "%25client0]:8080/cgi-bin/whoami", client.DialContext, false},
	} {
		got, err := fetchVia(t.Context(), tc.dial, tc.url)
		t.Logf("%s (%s): %q, %v", tc.what, tc.url, strings.TrimSpace(got), err)
		if (err == nil) != tc.reach {
			t.Errorf("%s: reached %v (%v), want %v", tc.what, err == nil, err, tc.reach)
		}
	}

	// A service of the host on the same port keeps its loopback clients;
	// other hosts still reach the machine.
	hostSvc, err := m.Listen("tcp4", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(hostSvc, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host service\n") }))
	if got, err := fetchVia(t.Context(), m.DialContext, "http://127.0.0.1:8080/"); err != nil || got != "host service\n" {
		t.Errorf("host -> 127.0.0.1:8080 with a host service there: %q, %v", got, err)
	}
	if got, err := fetchVia(t.Context(), client.DialContext, page); err != nil || !strings.Contains(got, "seen-from") {
		t.Errorf("outside client with a host service on the port: %q, %v; want the machine's app", got, err)
	}
	hostSvc.Close()

	// A clone does not take the source's ports, and cannot publish them.
	if out, err := m.mbctl(t.Context(), "machines", "clone", "--quiet", "--yes", "--publish", "8080:80", "pubweb", "pubweb2").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "host port 8080/tcp is published by machine pubweb already") {
		t.Errorf("clone --publish of pubweb's port: %v\n%s", err, out)
	}
	m.mustMbctl(t, "machines", "clone", "--quiet", "--yes", "pubweb", "pubweb2")
	if show := m.mustMbctl(t, "machines", "show", "pubweb2"); strings.Contains(show, "Port=") || !strings.Contains(show, "Published:    -") {
		t.Errorf("the clone has published ports:\n%s", show)
	}

	// Another machine cannot take the host port; an IPv4-only app is
	// reached over IPv6 through man8s-init's forwarder on its ygg address.
	if out, err := m.mbctl(t.Context(), "machines", "publish", "pubweb4", "8080").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "host port 8080/tcp is published by machine pubweb already") {
		t.Errorf("publish of pubweb's host port on pubweb4: %v\n%s", err, out)
	}
	m.mustMbctl(t, "machines", "publish", "pubweb4", "8081:80")
	run4 := m.startRun(t, "pubweb4")
	for _, tc := range []struct{ url, seen string }{
		{"http://" + hostAddr4.Addr().String() + ":8081/cgi-bin/whoami", "seen-from " + clientAddr4.Addr().String() + "\n"},
		{"http://[" + hostAddr6.Addr().String() + "]:8081/cgi-bin/whoami", "seen-from 127.0.0.1\n"},
	} {
		if !poll(60*time.Second, nil, func() bool {
			last, lastErr = fetchVia(t.Context(), client.DialContext, tc.url)
			return lastErr == nil
		}) {
			t.Errorf("the outside client did not get %s: %v\nmachine pubweb4:\n%s", tc.url, lastErr, run4.output())
			continue
		}
		t.Logf("outside client -> IPv4-only app, %s: %q", tc.url, strings.TrimSpace(last))
		if last != tc.seen {
			t.Errorf("outside client -> %s: %q, want %q", tc.url, last, tc.seen)
		}
	}
	run4.stop(t)

	// Unpublish: the running machine keeps it until its next start.
	if out := m.mustMbctl(t, "machines", "unpublish", "pubweb", "--all"); !strings.Contains(out, "Unpublished host port 8080/tcp of machine pubweb") ||
		!strings.Contains(out, "takes effect at its next start") {
		t.Errorf("unpublish:\n%s", out)
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("stop: status %d\n%s", code, run.output())
	}
	run = m.startRun(t, "pubweb")
	ygg, err := yggaddr.Address(m.Ygg.Subnet, "pubweb")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the app to answer on its ygg address again", func() bool {
		_, err := fetchVia(t.Context(), m.DialContext, "http://["+ygg.String()+"]:80/cgi-bin/whoami")
		return err == nil
	})
	// The app answers in the machine, and the host port is closed.
	var refused error
	waitFor(t, "the host port to be closed from outside", func() bool {
		_, refused = fetchVia(t.Context(), client.DialContext, page)
		return errors.Is(refused, syscall.ECONNREFUSED)
	})
	if show := m.mustMbctl(t, "machines", "show", "pubweb"); !strings.Contains(show, "Published:    -") {
		t.Errorf("machines show after unpublish:\n%s", show)
	}
	run.stop(t)
}
