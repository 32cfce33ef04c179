package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/proc"
)

// netMachine is a busybox machine run by systemd-nspawn on a testbed
// host's bridge with man8s-init.
type netMachine struct {
	Name   string
	Rootfs string
	Ygg    netip.Addr
	Out    *proc.Buffer
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
}

// machineSpec says what startNetMachine puts into the machine.
type machineSpec struct {
	// Env is appended to the env file after MAN8S_YGGDRASIL_ADDRESS.
	Env string
	// Files are written into the rootfs (path → content, mode 0755).
	Files map[string]string
	// PID1 runs man8s-init as PID 1 (ProcessTwo=no) instead of PID 2,
	// with nspawn's kill signal SIGTERM (as for s6-overlay).
	PID1 bool
}

// startNetMachine builds the machine's rootfs, starts it and stops it in
// t.Cleanup (SIGTERM to nspawn, as systemd does, with KillSignal=SIGRTMIN+3).
func startNetMachine(t *testing.T, h *testbed.Host, spec machineSpec) *netMachine {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	m := &netMachine{Name: "net-" + hex.EncodeToString(rnd[:]), Rootfs: filepath.Join(t.TempDir(), "rootfs"), Out: &proc.Buffer{}, done: make(chan struct{})}
	initRootfs(t, m.Rootfs, spec.Files)
	var err error
	if m.Ygg, err = yggaddr.Address(h.Ygg.Subnet, m.Name); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(m.Rootfs, "man8env.env"), fmt.Sprintf("MAN8S_CONTAINER_NAME=%s\nMAN8S_YGGDRASIL_ADDRESS=%s\n%s", m.Name, m.Ygg, spec.Env), 0o644)

	args := []string{"--quiet", "--register=no", "--keep-unit", "-M", m.Name, "-D", m.Rootfs,
		"--network-bridge=" + h.Bridge}
	if spec.PID1 {
		args = append(args, "--kill-signal=SIGTERM")
	} else {
		args = append(args, "--as-pid2", "--kill-signal=SIGRTMIN+3")
	}
	m.cmd = h.Command(context.WithoutCancel(t.Context()), "systemd-nspawn", append(args, "/man8s-init/man8s-init")...)
	m.cmd.Stdout, m.cmd.Stderr = m.Out, m.Out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(20 * time.Second):
			t.Errorf("machine %s did not stop in 20s; killed", m.Name)
			m.cmd.Process.Kill()
			<-m.done
			// nspawn killed leaves the machine's processes behind.
			for _, pid := range m.pids() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("machine %s console:\n%s", m.Name, m.Out.String())
		}
	})
	return m
}

// waitUntil waits until cond holds, failing t if the machine ends or
// timeout passes first.
func waitUntil(t *testing.T, m *netMachine, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if poll(timeout, m.done, cond) {
		return
	}
	select {
	case <-m.done:
		t.Fatalf("machine ended (%v) while waiting for %s\n%s", m.err, what, m.Out.String())
	default:
		t.Fatalf("no %s after %s", what, timeout)
	}
}

// waitLine waits for a console line matching re and returns its submatches.
func (m *netMachine) waitLine(t *testing.T, timeout time.Duration, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var got []string
	waitUntil(t, m, timeout, fmt.Sprintf("console line %q", re), func() bool {
		got = rx.FindStringSubmatch(m.Out.String())
		return got != nil
	})
	return got
}

// fetch gets url from the host's namespace.
func fetch(ctx context.Context, h *testbed.Host, url string) (string, error) {
	return fetchVia(ctx, h.DialContext, url)
}

// webApp serves /www over HTTP on every address.
const webApp = `#!/bin/sh
mkdir -p /www
echo "hello from $MAN8S_CONTAINER_NAME" > /www/index.html
exec httpd -f -p 80 -h /www
`

// pids returns the PIDs (in our namespace) of the machine's app processes:
// those whose environment names the machine.
func (m *netMachine) pids() []int {
	want := []byte("\x00MAN8S_CONTAINER_NAME=" + m.Name + "\x00")
	dirs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var pids []int
	for _, d := range dirs {
		env, err := os.ReadFile(d)
		if err == nil && bytes.Contains(append([]byte{0}, env...), want) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// appPID returns the PID of a process of the machine's app.
func (m *netMachine) appPID(t *testing.T) string {
	t.Helper()
	pids := m.pids()
	if len(pids) == 0 {
		t.Fatalf("no process of machine %s found", m.Name)
	}
	return strconv.Itoa(pids[0])
}

// Proof (issue 5): a machine on the testbed bridge gets IPv4 from networkd,
// an fc00::/64 SLAAC address and its Yggdrasil address with the exact rule
// and table-199 routes; its HTTP app answers from the host namespace on the
// ygg address and on IPv4; and the short lease is renewed while it runs.
func TestInitConfiguresNetworkAndRenewsLease(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	const lease = 10 * time.Second
	dns := netip.MustParseAddr("198.18.1.53")
	h := testbed.NewHostT(t, testbed.Options{DHCPLeaseTime: lease, DHCPDNS: []netip.Addr{dns}})
	m := startNetMachine(t, h, machineSpec{
		Env:   "MAN8S_APPLICATION_ARGS=/web.sh\nMAN8S_NETWORK_CHECK=strict\n",
		Files: map[string]string{"web.sh": webApp},
	})
	m.waitLine(t, 30*time.Second, `man8s-init: app: starting`)
	t.Log(m.waitLine(t, time.Second, `man8s-init: network: ready.*`)[0])
	ipv4 := netip.MustParseAddr(m.waitLine(t, time.Second, `man8s-init: dhcp: (\S+)/\d+ router`)[1])
	if !h.IPv4.Contains(ipv4) || ipv4 == h.IPv4.Addr() {
		t.Errorf("leased %s, not a machine address in %s", ipv4, h.IPv4)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, url := range []string{fmt.Sprintf("http://[%s]/", m.Ygg), fmt.Sprintf("http://%s/", ipv4)} {
		var body string
		var err error
		waitUntil(t, m, 20*time.Second, "answer from "+url, func() bool {
			body, err = fetch(ctx, h, url)
			return err == nil
		})
		if want := "hello from " + m.Name; !strings.Contains(body, want) {
			t.Errorf("%s answered %q, want %q", url, body, want)
		}
	}

	// Read the state back inside the machine's network namespace with
	// the host's iproute2 (busybox ip names neither flags nor tables).
	pid := m.appPID(t)
	ip := func(args ...string) string {
		out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--target", pid, "--net", "ip"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v in the machine: %v\n%s", args, err, out)
		}
		return string(out)
	}
	rules, table, addr6 := ip("-6", "rule"), ip("-6", "route", "show", "table", "199"), ip("-6", "addr", "show", "dev", "host0")
	subnet := strings.TrimSuffix(h.Ygg.Subnet.Addr().String(), "::")
	yggRe := regexp.QuoteMeta(m.Ygg.String())
	for _, c := range []struct{ what, got, want string }{
		{"rules", rules, `(?m)^100:\s+from all to 200::/7 lookup 199\s*$`},
		{"table 199", table, fmt.Sprintf(`(?m)^%s::/64 dev host0 .*src %s`, regexp.QuoteMeta(subnet), yggRe)},
		{"table 199", table, fmt.Sprintf(`(?m)^200::/7 via %s::1 dev host0 .*src %s`, regexp.QuoteMeta(subnet), yggRe)},
		{"addresses", addr6, fmt.Sprintf(`inet6 %s/64 scope global nodad noprefixroute \n`, yggRe)},
		{"addresses", addr6, `inet6 fc00::[0-9a-f:]+/64 scope global `},
		{"IPv4 addresses", ip("-4", "addr", "show", "dev", "host0"), fmt.Sprintf(`inet %s/24 .*scope global`, regexp.QuoteMeta(ipv4.String()))},
		{"IPv4 routes", ip("-4", "route"), fmt.Sprintf(`default via %s dev host0`, regexp.QuoteMeta(h.IPv4.Addr().String()))},
	} {
		if !regexp.MustCompile(c.want).MatchString(c.got) {
			t.Errorf("%s do not match %q:\n%s", c.what, c.want, c.got)
		}
	}
	// The lease's DNS server, in the resolv.conf the machine sees (nspawn
	// may have copied or mounted one there first).
	resolv, err := exec.CommandContext(ctx, "nsenter", "--target", pid, "--mount", "--root", "cat", "/etc/resolv.conf").CombinedOutput()
	if err != nil || !strings.Contains(string(resolv), "nameserver "+dns.String()+"\n") {
		t.Errorf("the machine's resolv.conf lacks the lease's DNS server %s (%v):\n%s", dns, err, resolv)
	}
	if n := strings.Count(rules, "200::/7"); n != 1 {
		t.Errorf("want exactly one rule for 200::/7, have %d:\n%s", n, rules)
	}
	if n := strings.Count(table, "\n"); n != 2 {
		t.Errorf("want exactly two routes in table 199, have %d:\n%s", n, table)
	}

	// Renewal: at T1 (half the lease) and again before the first T1 of
	// the renewed lease passes; the address never lapses.
	m.waitLine(t, 2*lease, `man8s-init: dhcp: lease renewed`)
	m.waitLine(t, 2*lease, `(?s)lease renewed.*lease renewed`)
	if _, err := fetch(ctx, h, fmt.Sprintf("http://%s/", ipv4)); err != nil {
		t.Errorf("IPv4 after two renewals: %v", err)
	}
}

// Proof (issue 5): MAN8S_WAIT_FOR holds the app until a TCP listener in
// the host's namespace appears.
func TestInitWaitsForHostListener(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	h := testbed.NewHostT(t, testbed.Options{})
	const port = 7301
	m := startNetMachine(t, h, machineSpec{
		Env:   fmt.Sprintf("MAN8S_APPLICATION_ARGS=/bin/sh -c 'echo started > /started; exec sleep 1000'\nMAN8S_WAIT_FOR=tcp://%s:%d\n", h.IPv4.Addr(), port),
		Files: map[string]string{},
	})
	// The network is up and the wait has begun; the app has not started.
	m.waitLine(t, 30*time.Second, `man8s-init: network: ready`)
	m.waitLine(t, 10*time.Second, fmt.Sprintf(`man8s-init: wait: waiting up to 5m0s for 1 dependencies: tcp://%s:%d`, regexp.QuoteMeta(h.IPv4.Addr().String()), port))
	started := filepath.Join(m.Rootfs, "started")
	if _, err := os.Stat(started); err == nil {
		t.Fatal("the app started before its dependency existed")
	}
	l, err := h.Listen("tcp", fmt.Sprintf("%s:%d", h.IPv4.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	listening := time.Now()
	waitUntil(t, m, 20*time.Second, "the app's start", func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	t.Logf("app started %s after the listener", time.Since(listening).Round(time.Millisecond))
	m.waitLine(t, time.Second, `man8s-init: wait: 1 dependencies met`)
}

// Proof (issue 5): with MAN8S_IPV6=optional a machine on a bridge without
// router advertisements starts promptly (IPv4 only).
func TestInitIPv6OptionalWithoutRA(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	h := testbed.NewHostT(t, testbed.Options{NoRouterAdvertisements: true})
	m := startNetMachine(t, h, machineSpec{
		Env:   "MAN8S_APPLICATION_ARGS=/bin/sh -c 'echo started > /started; exec sleep 1000'\nMAN8S_IPV6=optional\nMAN8S_NETWORK_CHECK=strict\n",
		Files: map[string]string{},
	})
	waitUntil(t, m, 10*time.Second, "the app's start", func() bool {
		_, err := os.Stat(filepath.Join(m.Rootfs, "started"))
		return err == nil
	})
	// man8s-init's own figure: the wall clock here would also count nspawn's
	// start on a loaded CI machine.
	ready := m.waitLine(t, time.Second, `man8s-init: network: \w+ after ([\d.]+)ms`)
	if took, err := strconv.ParseFloat(ready[1], 64); err != nil || took > 4000 {
		t.Errorf("the network was ready only after %sms on an IPv4-only bridge", ready[1])
	}
	m.waitLine(t, time.Second, `man8s-init: ipv6: none after .*optional`)
	m.waitLine(t, time.Second, `man8s-init: check: ipv4 ok, ipv6 absent \(optional\), ygg ok`)
}

// initScript stands for an image's own init (s6-overlay, systemd): it
// records its PID and serves HTTP.
const initScript = `#!/bin/sh
trap 'exit 0' TERM
echo $$ > /pid
mkdir -p /www
echo "hello from pid $$" > /www/index.html
httpd -p 80 -h /www
while true; do sleep 1; done
`

// Proof (issue 5, exec-pid1): man8s-init runs as PID 1, configures the
// network and execs the image's init, which becomes PID 1; the renewer it
// leaves behind renews the lease after the exec.
func TestInitExecPID1(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	const lease = 10 * time.Second
	h := testbed.NewHostT(t, testbed.Options{DHCPLeaseTime: lease})
	m := startNetMachine(t, h, machineSpec{
		Env:   "MAN8S_APPLICATION_ARGS=/init.sh\nMAN8S_INIT_MODE=exec-pid1\nMAN8S_NETWORK_CHECK=strict\n",
		Files: map[string]string{"init.sh": initScript},
		PID1:  true,
	})
	m.waitLine(t, 30*time.Second, `man8s-init: app: exec \[.*"exec /init.sh"\] as PID 1`)
	m.waitLine(t, time.Second, `man8s-init: dhcp: lease renewer started as PID \d+`)
	waitUntil(t, m, 10*time.Second, "the image's init", func() bool {
		b, err := os.ReadFile(filepath.Join(m.Rootfs, "pid"))
		return err == nil && strings.TrimSpace(string(b)) == "1"
	})
	ipv4 := m.waitLine(t, time.Second, `man8s-init: dhcp: (\S+)/\d+ router`)[1]
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	waitUntil(t, m, 10*time.Second, "HTTP on ygg", func() bool {
		body, err := fetch(ctx, h, fmt.Sprintf("http://[%s]/", m.Ygg))
		return err == nil && strings.Contains(body, "hello from pid 1")
	})
	out := m.waitLine(t, 2*lease, `(?s)as PID 1.*(man8s-init: dhcp: lease renewed)`)
	t.Logf("after the exec: %s", out[1])
	if _, err := fetch(ctx, h, fmt.Sprintf("http://%s/", ipv4)); err != nil {
		t.Errorf("IPv4 after renewal: %v", err)
	}
}
