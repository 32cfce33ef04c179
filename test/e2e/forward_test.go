package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// Proof (issue 15, IPv4-only apps on the Yggdrasil address): hosts A and B
// run yggdrasil peered over a veth link. On B, a web server that listens
// on 0.0.0.0:80 only (EXPOSE 80/tcp) is forwarded by man8s-init from its
// ygg address; a machine on A fetches a page from it there. The app sees
// the forwarder (127.0.0.1) as the client, and man8s-init's log says
// that it forwards and that the port is reachable through the forwarder.
func TestIPv4OnlyAppAcrossHosts(t *testing.T) {
	x := startAcrossHosts(t, "web4", "client4", ociimage.AppConfig{
		Entrypoint:   []string{"httpd", "-f", "-p", "0.0.0.0:80", "-h", "/www"},
		ExposedPorts: []string{"80/tcp"},
	})
	if env := x.b.mustMbctl(t, "machines", "show", "web4"); !strings.Contains(env, "MAN8S_EXPOSED_PORTS=80/tcp") {
		t.Errorf("the pull did not record the exposed port:\n%s", env)
	}
	if want := "seen-from 127.0.0.1"; !strings.Contains(x.client.output(), want) {
		t.Errorf("the app saw another client address; want %q (the forwarder, no PROXY protocol):\n%s", want, x.client.output())
	}
	out := x.web.output()
	for _, p := range []string{
		`man8s-init: forward: watching 80/tcp`,
		`man8s-init: forward: 80/tcp: forwarding \[` + regexp.QuoteMeta(x.webAddr.String()) + `\]:80 to 127\.0\.0\.1:80 \(the app listens on IPv4 only\)`,
		`man8s-init: forward: 80/tcp: reachable on the ygg address through the forwarder`,
	} {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Errorf("web4's output lacks %q", p)
		}
	}
}

// Proof (issue 15, exec-pid1 mode): when the image's own init replaces
// man8s-init, the lease renewer it leaves behind forwards: an app that
// listens on IPv4 only answers on the machine's ygg address from the
// testbed host, with PROXY protocol off, and machines show says the port
// is forwarded.
func TestIPv4OnlyAppExecPID1(t *testing.T) {
	testbed.RequireT(t, curlBin)
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	web, err := ociimage.Layer(ociimage.File("www/index.html", []byte("hello over the forwarder\n"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	// PID 1 ignores signals it has no handler for: the shell traps TERM.
	server, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint:   []string{"/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 0.0.0.0:8080 -h /www & wait"},
		ExposedPorts: []string{"8080/tcp"},
	}, web)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, server, reg.Addr()+"/demo/web4pid1:1")
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", "--init-mode", "exec-pid1", reg.Addr()+"/demo/web4pid1:1", "web4pid1")
	addr, err := yggaddr.Address(m.Ygg.Subnet, "web4pid1")
	if err != nil {
		t.Fatal(err)
	}
	run := m.startRun(t, "web4pid1")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("machine web4pid1:\n%s", run.output())
		}
	})
	url := fmt.Sprintf("http://[%s]:8080/", addr)
	var last string
	waitFor(t, "the exec-pid1 app to answer on its ygg address", func() bool {
		out, err := m.Command(t.Context(), curlBin, "-sS", "-g", "--max-time", "5", url).CombinedOutput()
		last = string(out)
		return err == nil && strings.Contains(last, "hello over the forwarder")
	})
	if out := m.mustMbctl(t, "machines", "show", "web4pid1"); !strings.Contains(out, "8080/tcp: forwarded to 127.0.0.1:8080") {
		t.Errorf("machines show does not say the port is forwarded:\n%s", out)
	}
	if !strings.Contains(run.output(), "man8s-init: forward: 8080/tcp: forwarding ["+addr.String()+"]:8080 to 127.0.0.1:8080") {
		t.Errorf("the renewer did not log the forward")
	}
	run.stop(t)
}
