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
package main

import (
	"bufio"
	"context"
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
	return nil
}

type benchCase struct {
	name, machine, rootfs string
	ygg                   netip.Addr
	args                  []string // nspawn payload
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
	env := fmt.Sprintf("MAN8S_CONTAINER_NAME=%s\nMAN8S_YGGDRASIL_ADDRESS=%s\nMAN8S_APPLICATION_ARGS=httpd -f -p 80 -h /www\n", c.machine, c.ygg)
	c.args = []string{"/man8s-init/man8s-init"}
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
	cmd := h.Command(context.WithoutCancel(ctx), "systemd-nspawn", append([]string{"--quiet", "--register=no", "--keep-unit",
		"-M", c.machine, "-D", c.rootfs, "--network-bridge=" + h.Bridge, "--as-pid2", "--kill-signal=SIGRTMIN+3"}, c.args...)...)
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
