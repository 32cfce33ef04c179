// Command startup measures how fast a machine is reachable (issue 5's
// performance goal): from the start of systemd-nspawn to the machine's app
// accepting TCP on its Yggdrasil address, in a testbed host (real
// systemd-networkd and yggdrasil in a network namespace), median of -runs.
//
//	go run ./test/bench/startup [-init bin/man8s-init] [-runs 10]
//
// It measures man8s-init and, for comparison, a busybox-script init in the
// style of the original tool (one-shot `udhcpc -t 3 -T 3`, polling for the
// SLAAC address, adding the ygg address with ip, waiting out DAD), the two
// alternating. For man8s-init it prints the share of the startup spent on
// DHCP, on SLAAC and on the ygg address (from man8s-init's own step lines),
// and man8s-init's CPU time and peak RSS until the app starts. Run as root.
//
// man8s-init's machine runs with --notify-ready=yes, NOTIFY_SOCKET naming a
// socket of the bench and MAN8S_READY=tcp://127.0.0.1:80 (an app ready at
// once): the bench reports nspawn start → READY=1 beside start →
// answering. Then it measures the CPU time of man8s-init (with the checks
// it runs, which it reaps) over -health-window with a 1 s health interval,
// for no check, a tcp:// check and a command check, scaled to 10 minutes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

func main() {
	initBin := flag.String("init", "", "the man8s-init binary (default: go build ./cmd/man8s-init into a temp dir)")
	runs := flag.Int("runs", 10, "runs of each init; the median is reported")
	verbose := flag.Bool("v", false, "print every run's console")
	flag.DurationVar(&healthWindow, "health-window", 60*time.Second, "how long the CPU time of a 1 s health interval is measured (scaled to 10 minutes); 0: skip")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *initBin, *runs, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "startup bench: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "startup bench: "+format+"\n", args...) }

// result is one run's figures.
type result struct {
	total                 time.Duration // nspawn start → TCP accepted on the ygg address
	ready                 time.Duration // nspawn start → READY=1 from nspawn (man8s-init only)
	dhcp, slaac, ygg, net time.Duration // from man8s-init's step lines
	cpu                   time.Duration
	rssKiB                int
}

func run(ctx context.Context, initBin string, runs int, verbose bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, systemd-nspawn)")
	}
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	bb, err := ociimage.StaticBusybox()
	if err != nil {
		return err
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "yggdrasil"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make deps)", tool)
		}
	}
	work, err := os.MkdirTemp("", "man8s-startup-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if initBin == "" {
		initBin = filepath.Join(work, "man8s-init")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", initBin, "./cmd/man8s-init")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building man8s-init: %v\n%s", err, out)
		}
	}
	fi, err := os.Stat(initBin)
	if err != nil {
		return err
	}

	h, err := testbed.NewHost(ctx, testbed.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("starting the testbed: %w", err)
	}
	defer h.Close()
	// The probe's neighbour discovery must not lag: a solicitation for
	// the machine's address sent before the machine has it is retried
	// after retrans_time (1 s by default) only.
	if out, err := h.Command(ctx, "sysctl", "-qw", "net.ipv6.neigh."+h.Bridge+".retrans_time_ms=10").CombinedOutput(); err != nil {
		return fmt.Errorf("sysctl in the testbed: %v %s", err, out)
	}

	cases := []*benchCase{{name: "man8s-init"}, {name: "busybox script"}}
	for i, c := range cases {
		c.machine = fmt.Sprintf("bench%d", i)
		c.rootfs = filepath.Join(work, c.machine)
		if c.ygg, err = yggaddr.Address(h.Ygg.Subnet, c.machine); err != nil {
			return err
		}
		if err := ociimage.Rootfs(c.rootfs, bb); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(c.rootfs, "www"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.rootfs, "www/index.html"), []byte("hello\n"), 0o644); err != nil {
			return err
		}
	}
	if err := installInit(cases[0], initBin); err != nil {
		return err
	}
	if err := installScript(cases[1], h); err != nil {
		return err
	}

	logf("testbed %s, man8s-init %.2f MB, %d runs each", h.Name, float64(fi.Size())/1e6, runs)
	for i := range runs {
		for _, c := range cases {
			r, console, err := c.once(ctx, h)
			if verbose || err != nil {
				fmt.Fprintf(os.Stderr, "--- %s run %d console:\n%s", c.name, i+1, console)
			}
			if err != nil {
				return fmt.Errorf("%s run %d: %w", c.name, i+1, err)
			}
			logf("%s run %d: %s", c.name, i+1, ms(r.total))
			c.results = append(c.results, r)
		}
	}
	report(os.Stdout, cases, fi.Size())
	if healthWindow > 0 {
		return healthCost(ctx, h, cases[0])
	}
	return nil
}

type benchCase struct {
	name, machine, rootfs string
	ygg                   netip.Addr
	args                  []string // nspawn payload
	notify                bool     // man8s-init: --notify-ready=yes, READY=1 timed
	results               []result
}

func installInit(c *benchCase, initBin string) error {
	data, err := os.ReadFile(initBin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.rootfs, "man8s-init"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.rootfs, "man8s-init/man8s-init"), data, 0o755); err != nil {
		return err
	}
	env := fmt.Sprintf("MAN8S_CONTAINER_NAME=%s\nMAN8S_YGGDRASIL_ADDRESS=%s\nMAN8S_APPLICATION_ARGS=httpd -f -p 80 -h /www\nMAN8S_READY=tcp://127.0.0.1:80\n", c.machine, c.ygg)
	c.args = []string{"/man8s-init/man8s-init"}
	c.notify = true
	return os.WriteFile(filepath.Join(c.rootfs, "man8env.env"), []byte(env), 0o644)
}

// bbScript is the comparison: a busybox init as the original tool did it.
const bbScript = `#!/bin/sh
ip link set host0 up
udhcpc -i host0 -t 3 -T 3 -q -n -s /udhcpc.sh
echo "bb: dhcp done"
until ip -6 addr show dev host0 scope global | grep -v tentative | grep -q 'inet6 fc00'; do sleep 0.1; done
echo "bb: slaac done"
ip -6 addr add YGG/64 dev host0
while ip -6 addr show dev host0 | grep -q tentative; do sleep 0.1; done
ip -6 route add SUBNET/64 dev host0 src YGG table 199
ip -6 route add 200::/7 via GATEWAY dev host0 src YGG table 199
ip -6 rule add to 200::/7 lookup 199 prio 100
echo "bb: ygg done"
exec httpd -f -p 80 -h /www
`

const udhcpcHook = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route add default via "$router" dev "$interface"
	;;
esac
`

func installScript(c *benchCase, h *testbed.Host) error {
	s := strings.NewReplacer("YGG", c.ygg.String(), "SUBNET", h.Ygg.Subnet.Addr().String(), "GATEWAY", h.YggGateway().String()).Replace(bbScript)
	if err := os.WriteFile(filepath.Join(c.rootfs, "init.sh"), []byte(s), 0o755); err != nil {
		return err
	}
	c.args = []string{"/bin/sh", "/init.sh"}
	return os.WriteFile(filepath.Join(c.rootfs, "udhcpc.sh"), []byte(udhcpcHook), 0o755)
}

// once starts the machine, waits until its app accepts TCP on the ygg
// address from the host's namespace, and stops it.
func (c *benchCase) once(ctx context.Context, h *testbed.Host) (result, string, error) {
	var r result
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	nspawnArgs := []string{"--quiet", "--register=no", "--keep-unit",
		"-M", c.machine, "-D", c.rootfs, "--network-bridge=" + h.Bridge, "--as-pid2", "--kill-signal=SIGRTMIN+3"}
	var readyAt <-chan time.Time
	var sock *notifyListener
	if c.notify {
		var err error
		if sock, err = listenNotify(c.rootfs + ".notify"); err != nil {
			return r, "", err
		}
		defer sock.Close()
		readyAt = sock.ready
		nspawnArgs = append(nspawnArgs, "--notify-ready=yes")
	}
	cmd := h.Command(context.WithoutCancel(ctx), "systemd-nspawn", append(nspawnArgs, c.args...)...)
	if sock != nil {
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock.path)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var console strings.Builder
	var mu sync.Mutex
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.OnceFunc(func() { close(started) })
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			console.WriteString(line + "\n")
			mu.Unlock()
			if strings.HasPrefix(line, "man8s-init: app: starting") || strings.HasPrefix(line, "bb: ygg done") {
				once()
			}
		}
	}()
	text := func() string { mu.Lock(); defer mu.Unlock(); return console.String() }

	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return r, "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	stopMachine := sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	defer stopMachine()

	select {
	case <-started:
	case err := <-done:
		done <- err // for stopMachine
		return r, text(), fmt.Errorf("machine ended before its app started: %v", err)
	case <-ctx.Done():
		return r, text(), fmt.Errorf("the app did not start in time")
	}
	addr := net.JoinHostPort(c.ygg.String(), "80")
	err := h.InNetns(func() error {
		for {
			conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
			if err == nil {
				r.total = time.Since(t0)
				conn.Close()
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("no TCP answer on %s: %w", addr, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	if err != nil {
		return r, text(), err
	}
	if readyAt != nil {
		select {
		case at := <-readyAt:
			r.ready = at.Sub(t0)
		case <-ctx.Done():
			return r, text(), fmt.Errorf("no READY=1 from nspawn")
		}
	}
	stopMachine()
	out := text()
	if m := regexp.MustCompile(`network: ready after ([\d.]+)ms \(dhcp ([\d.]+)ms, slaac ([\d.]+)ms, ygg ([\d.]+)ms\)`).FindStringSubmatch(out); m != nil {
		r.net, r.dhcp, r.slaac, r.ygg = msOf(m[1]), msOf(m[2]), msOf(m[3]), msOf(m[4])
	}
	if m := regexp.MustCompile(`init cpu ([\d.]+)ms, max rss (\d+) KiB`).FindStringSubmatch(out); m != nil {
		r.cpu = msOf(m[1])
		r.rssKiB, _ = strconv.Atoi(m[2])
	}
	return r, out, nil
}

func msOf(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Millisecond))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func median[T int | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func field[T any](rs []result, f func(result) T) []T {
	out := make([]T, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func report(w io.Writer, cases []*benchCase, initSize int64) {
	fmt.Fprintf(w, "\nStartup: systemd-nspawn start → app accepts TCP on its Yggdrasil address (median of %d)\n\n", len(cases[0].results))
	for _, c := range cases {
		tot := field(c.results, func(r result) time.Duration { return r.total })
		fmt.Fprintf(w, "%-15s median %s  (min %s, max %s)  runs:", c.name, ms(median(tot)), ms(slices.Min(tot)), ms(slices.Max(tot)))
		for _, d := range tot {
			fmt.Fprintf(w, " %.0f", float64(d)/float64(time.Millisecond))
		}
		fmt.Fprintln(w)
	}
	m := cases[0].results
	total := median(field(m, func(r result) time.Duration { return r.total }))
	readies := field(m, func(r result) time.Duration { return r.ready })
	diff := median(field(m, func(r result) time.Duration { return r.ready - r.total })) // per run
	fmt.Fprintf(w, "%-15s median %s  (min %s, max %s)  runs:", "  READY=1", ms(median(readies)), ms(slices.Min(readies)), ms(slices.Max(readies)))
	for _, d := range readies {
		fmt.Fprintf(w, " %.0f", float64(d)/float64(time.Millisecond))
	}
	fmt.Fprintf(w, "\n%-15s systemd-nspawn start → READY=1 (--notify-ready=yes, MAN8S_READY=tcp://127.0.0.1:80, an app ready at once): median %+.0f ms against answering, goal within 20 ms: %s\n",
		"", float64(diff)/float64(time.Millisecond), map[bool]string{true: "met", false: "NOT met"}[diff <= 20*time.Millisecond])
	share := func(f func(result) time.Duration) string {
		d := median(field(m, f))
		return fmt.Sprintf("%s (%.0f%%)", ms(d), 100*float64(d)/float64(total))
	}
	fmt.Fprintf(w, "\nman8s-init, medians, counted from man8s-init's start (they overlap: the three run at once):\n")
	fmt.Fprintf(w, "  network ready  %s\n", share(func(r result) time.Duration { return r.net }))
	fmt.Fprintf(w, "  DHCP           %s\n", share(func(r result) time.Duration { return r.dhcp }))
	fmt.Fprintf(w, "  SLAAC/DAD      %s\n", share(func(r result) time.Duration { return r.slaac }))
	fmt.Fprintf(w, "  ygg address    %s\n", share(func(r result) time.Duration { return r.ygg }))
	fmt.Fprintf(w, "  init CPU time  %s until the app starts\n", ms(median(field(m, func(r result) time.Duration { return r.cpu }))))
	fmt.Fprintf(w, "  init peak RSS  %.1f MB\n", float64(median(field(m, func(r result) int { return r.rssKiB })))/1024)
	fmt.Fprintf(w, "  binary size    %.2f MB\n", float64(initSize)/1e6)
	bb := median(field(cases[1].results, func(r result) time.Duration { return r.total }))
	fmt.Fprintf(w, "\nbusybox script / man8s-init: %.1fx (%s vs %s); goal, man8s-init median under 1000 ms: %s\n",
		float64(bb)/float64(total), ms(bb), ms(total), map[bool]string{true: "met", false: "NOT met"}[total < time.Second])
}

// healthWindow is -health-window.
var healthWindow time.Duration

// notifyListener is the bench's stand-in for systemd's notify socket.
type notifyListener struct {
	path  string
	conn  *net.UnixConn
	ready chan time.Time
}

func listenNotify(path string) (*notifyListener, error) {
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	n := &notifyListener{path: path, conn: conn, ready: make(chan time.Time, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			nb, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			if slices.Contains(strings.Split(string(buf[:nb]), "\n"), "READY=1") {
				select {
				case n.ready <- time.Now():
				default:
				}
			}
		}
	}()
	return n, nil
}

func (n *notifyListener) Close() error { os.Remove(n.path); return n.conn.Close() }

// healthCost measures man8s-init's CPU time (its own and that of the
// checks it reaps) over healthWindow with a 1 s health interval, for no
// check, a tcp:// check and a command check run through /bin/sh.
func healthCost(ctx context.Context, h *testbed.Host, c *benchCase) error {
	base, err := os.ReadFile(filepath.Join(c.rootfs, "man8env.env"))
	if err != nil {
		return err
	}
	defer os.WriteFile(filepath.Join(c.rootfs, "man8env.env"), base, 0o644)
	fmt.Printf("\nHealth checks: man8s-init's CPU time (its own + the checks it reaps) over %s with MAN8S_HEALTHCHECK_INTERVAL=1s, scaled to 10 minutes\n\n", healthWindow)
	for _, hc := range []struct{ name, env string }{
		{"no check", "MAN8S_HEALTH=none\n"},
		{"tcp://", "MAN8S_HEALTH=tcp://127.0.0.1:80\n"},
		{"cmd: (sh + wget)", "MAN8S_HEALTH=cmd:wget -q -O /dev/null http://127.0.0.1:80/\n"},
	} {
		env := string(base) + "MAN8S_HEALTHCHECK_INTERVAL=1s\n" + hc.env
		if err := os.WriteFile(filepath.Join(c.rootfs, "man8env.env"), []byte(env), 0o644); err != nil {
			return err
		}
		cpu, checks, err := c.cpuOver(ctx, h, healthWindow)
		if err != nil {
			return fmt.Errorf("health cost, %s: %w", hc.name, err)
		}
		per := time.Duration(0)
		if checks > 0 {
			per = cpu / time.Duration(checks)
		}
		scaled := time.Duration(float64(cpu) * float64(10*time.Minute) / float64(healthWindow))
		fmt.Printf("%-17s %6.0f ms in %s (%d checks, %.2f ms each) → %6.0f ms per 10 minutes (%.3f%% of one core)\n", hc.name,
			float64(cpu)/float64(time.Millisecond), healthWindow, checks, float64(per)/float64(time.Millisecond),
			float64(scaled)/float64(time.Millisecond), 100*float64(scaled)/float64(10*time.Minute))
	}
	return nil
}

// cpuOver runs the machine, waits until it is ready and settled, and
// returns man8s-init's CPU time over window and the checks it ran.
func (c *benchCase) cpuOver(ctx context.Context, h *testbed.Host, window time.Duration) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, window+90*time.Second)
	defer cancel()
	sock, err := listenNotify(c.rootfs + ".notify")
	if err != nil {
		return 0, 0, err
	}
	defer sock.Close()
	cmd := h.Command(context.WithoutCancel(ctx), "systemd-nspawn", append([]string{"--quiet", "--register=no", "--keep-unit",
		"-M", c.machine, "-D", c.rootfs, "--network-bridge=" + h.Bridge, "--as-pid2", "--kill-signal=SIGRTMIN+3", "--notify-ready=yes"}, c.args...)...)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock.path)
	var console strings.Builder
	var mu sync.Mutex
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			console.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	select {
	case <-sock.ready:
	case err := <-done:
		done <- err // for the deferred stop
		return 0, 0, fmt.Errorf("machine ended: %v\n%s", err, console.String())
	case <-ctx.Done():
		return 0, 0, errors.New("no READY=1")
	}
	time.Sleep(2 * time.Second) // the start's own work is done
	pid, err := initPID(cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	before, err := procCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	checksBefore := countChecks(pid)
	select {
	case <-time.After(window):
	case err := <-done:
		done <- err
		return 0, 0, fmt.Errorf("machine ended during the window: %v", err)
	}
	after, err := procCPU(pid)
	if err != nil {
		return 0, 0, err
	}
	return after - before, countChecks(pid) - checksBefore, nil
}

// initPID finds man8s-init under nsenter → systemd-nspawn → stub init.
func initPID(root int) (int, error) {
	ppid := map[int]int{}
	cmdline := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) > 1 {
			ppid[pid], _ = strconv.Atoi(f[1])
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cmdline[pid] = string(cl)
	}
	for pid, cl := range cmdline {
		if !strings.HasPrefix(cl, "/man8s-init/man8s-init") {
			continue
		}
		for p := pid; p > 1; p = ppid[p] {
			if p == root {
				return pid, nil
			}
		}
	}
	return 0, errors.New("man8s-init not found among the machine's processes")
}

// procCPU is utime+stime+cutime+cstime of pid: its own CPU time and that
// of the children it has reaped (the checks).
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // fields 14-17, counted after the comm
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100, nil // USER_HZ
}

// countChecks reads the number of health checks run from man8s-init's
// state file in the machine.
func countChecks(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/run/man8s/health.json", pid))
	if err != nil {
		return 0
	}
	var h struct {
		Checks int `json:"checks"`
	}
	json.Unmarshal(raw, &h)
	return h.Checks
}
