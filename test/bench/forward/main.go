// Command forward measures man8s-init's port forwarder (issue 15's
// performance goal) against a direct IPv6 connection, in one run on this
// machine:
//
//	go run ./test/bench/forward [-rounds 3] [-duration 3s] [-streams 2] [-conns 1000]
//
// Two apps run in the bench's process: one listens on 127.0.0.1 only (the
// IPv4-only app), the other on ::1 (an app that listens on IPv6). The
// forwarder runs in a child process (the bench itself, re-executed), as
// in a machine: it finds the first app's IPv4 listener in /proc/net and
// forwards [::1]:port to it, standing for the machine's ygg address. The
// clients connect over IPv6 to both, the cases alternating in each round:
//
//   - throughput: -streams connections, each sending as fast as it can
//     for -duration into an app that discards;
//   - connection rate: 16 workers, each connecting, sending a request,
//     reading the app's reply and closing, for -duration;
//   - memory: -conns connections held open at once through the forwarder
//     (each has carried a request and its reply), and the forwarder's
//     RSS then (VmRSS, and its peak VmHWM, of the child).
//
// During the first two, -idle connections stay open through the
// forwarder, as keep-alive clients would. Run as root, the bench runs the
// forwarder as an unprivileged host user (-forwarder-uid), as a machine's
// root is one on the host: the kernel limits such a user's pipes.
//
// It prints each case's median and the ratios forwarded/direct; the goal
// is a throughput ratio of at least 0.8. Traffic stays on loopback; with
// -link (the default) the throughput and rate cases run once more across
// a veth pair between two new network namespaces (link.go), and with -ygg
// (the default) over Yggdrasil between two testbed hosts (ygg.go); on
// both HAProxy (if installed) forwards too, as the reference user-space
// proxy.
package main

import (
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/forward"
)

// childEnv makes the bench the forwarder child; its value is the port.
const childEnv = "MBCTL_BENCH_FORWARDER_PORT"

// childProcs is the forwarder's GOMAXPROCS (-forwarder-procs);
// idleConns the idle connections held during the cases (-idle).
var (
	childProcs string
	childUID   int
	idleConns  int
)

func main() {
	if port := os.Getenv(childEnv); port != "" {
		os.Exit(child(port))
	}
	link := flag.Bool("link", true, "also measure across a veth pair between two new network namespaces (the client in one, the apps and the forwarder in the other), as a machine is reached")
	ygg := flag.Bool("ygg", true, "also measure over Yggdrasil between two testbed hosts (real yggdrasil peered over a veth), as a machine on another host reaches one")
	rounds := flag.Int("rounds", 3, "rounds; each case runs once per round, direct and forwarded alternating, and the median is reported")
	duration := flag.Duration("duration", 3*time.Second, "how long each throughput and connection-rate case runs")
	streams := flag.Int("streams", 2, "parallel connections of the throughput case")
	conns := flag.Int("conns", 1000, "connections held open at once for the memory case")
	flag.StringVar(&childProcs, "forwarder-procs", "", "GOMAXPROCS of the forwarder (default: Go's, the CPUs)")
	flag.IntVar(&childUID, "forwarder-uid", 0x170000, "host uid (and gid) the forwarder runs as when the bench is root, as a machine's root is under PrivateUsers=pick (the kernel limits such a user's pipes); -1: the bench's own")
	flag.IntVar(&idleConns, "idle", 100, "idle connections (keep-alive clients) held open through the forwarder during the throughput and rate cases")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(linkRole(ctx, role, *rounds, *duration, *streams))
	}
	if err := run(ctx, *rounds, *duration, *streams, *conns); err != nil {
		fmt.Fprintf(os.Stderr, "forward bench: %v\n", err)
		os.Exit(1)
	}
	for _, path := range []struct {
		on  bool
		run func(context.Context, int, time.Duration, int) error
	}{{*link, runLink}, {*ygg, runYgg}} {
		if !path.on {
			continue
		}
		fmt.Println()
		if err := path.run(ctx, *rounds, *duration, *streams); err != nil {
			fmt.Fprintf(os.Stderr, "forward bench: %v\n", err)
			os.Exit(1)
		}
	}
}

// child runs the forwarder for port on ::1 until SIGTERM.
func child(port string) int {
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		fmt.Fprintf(os.Stderr, "forwarder child: port %q: %v\n", port, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = forward.Run(ctx, forward.Options{
		Ports: []man8env.Port{{Num: uint16(n), Proto: man8env.TCP}},
		Ygg:   netip.IPv6Loopback(),
		Addrs: func() ([]netip.Addr, error) { return nil, nil },
		Log:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "forwarder child: %v\n", err)
		return 1
	}
	return 0
}

// app is one of the bench's apps: it discards what a "sink" connection
// sends, answers a request line with "ok\n" and closes otherwise.
type app struct {
	ln       net.Listener
	received atomic.Int64
}

func startApp(network, addr string) (*app, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	a := &app{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go a.serve(c)
		}
	}()
	return a, nil
}

func (a *app) serve(c net.Conn) {
	defer c.Close()
	var kind [1]byte
	if _, err := io.ReadFull(c, kind[:]); err != nil {
		return
	}
	switch kind[0] {
	case 's': // sink
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			a.received.Add(int64(n))
			if err != nil {
				return
			}
		}
	case 'r': // request, reply, close
		c.Write([]byte("ok\n"))
	case 'h': // hold: reply, then wait for the client's close
		c.Write([]byte("ok\n"))
		io.Copy(io.Discard, c)
	}
}

func (a *app) port() int { return a.ln.Addr().(*net.TCPAddr).Port }

func run(ctx context.Context, rounds int, d time.Duration, streams, conns int) error {
	raiseNoFile(4 * conns)
	v4, v6, err := appPair()
	if err != nil {
		return err
	}
	defer v4.ln.Close()
	defer v6.ln.Close()
	fwdAddr := netip.AddrPortFrom(netip.IPv6Loopback(), uint16(v4.port())).String()
	directAddr := v6.ln.Addr().String()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, v4.port()))
	if childProcs != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+childProcs)
	}
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	uid := os.Getuid()
	if uid == 0 && childUID >= 0 {
		// go run's build dir is root's alone: the other user runs a copy.
		exe, err := copyExecutable(self)
		if err != nil {
			return err
		}
		defer os.Remove(exe)
		cmd.Path, cmd.Args[0] = exe, exe
		uid = childUID
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(childUID), Gid: uint32(childUID)}}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the forwarder: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if err := waitDial(ctx, fwdAddr, 10*time.Second); err != nil {
		return fmt.Errorf("the forwarder never listened on %s: %w", fwdAddr, err)
	}
	fmt.Printf("forwarder bench: IPv4-only app on %s forwarded from %s (forwarder PID %d); direct: app on %s\n",
		v4.ln.Addr(), fwdAddr, cmd.Process.Pid, directAddr)
	fmt.Printf("%d rounds, %s per case, %d streams, %d idle connections during them, %d held for the RSS, %d CPUs, forwarder uid %d\n\n", rounds, d, streams, idleConns, conns, numCPU(), uid)
	idle, err := hold(ctx, fwdAddr, idleConns)
	if err != nil {
		return err
	}
	for _, c := range idle {
		defer c.Close()
	}

	var thr, rate [2][]float64 // [direct, forwarded]
	var fwdCPU time.Duration   // the forwarder's CPU time in the throughput cases
	var fwdBytes int64         // and the bytes it moved there
	targets := [2]struct {
		addr string
		app  *app
	}{{directAddr, v6}, {fwdAddr, v4}}
	for r := range rounds {
		for i, t := range targets {
			if r%2 == 1 {
				t = targets[1-i] // alternate who goes first
				i = 1 - i
			}
			cpu0 := cpuTime(cmd.Process.Pid)
			bps, moved, err := throughput(ctx, t.addr, t.app, streams, d)
			if err != nil {
				return err
			}
			if i == 1 && moved > 0 {
				fwdCPU += cpuTime(cmd.Process.Pid) - cpu0
				fwdBytes += moved
			}
			cps, err := connRate(ctx, t.addr, d)
			if err != nil {
				return err
			}
			thr[i] = append(thr[i], bps)
			rate[i] = append(rate[i], cps)
			fmt.Printf("round %d %-9s throughput %8.0f MB/s   connections %7.0f /s\n", r+1, []string{"direct", "forwarded"}[i], bps/1e6, cps)
		}
	}
	rss, hwm, err := heldRSS(ctx, fwdAddr, cmd.Process.Pid, conns)
	if err != nil {
		return err
	}
	td, tf := median(thr[0]), median(thr[1])
	cd, cf := median(rate[0]), median(rate[1])
	fmt.Printf("\n%-22s %12s %12s %8s\n", "median", "direct", "forwarded", "ratio")
	fmt.Printf("%-22s %9.0f MB/s %9.0f MB/s %8.2f\n", "throughput", td/1e6, tf/1e6, tf/td)
	fmt.Printf("%-22s %10.0f /s %10.0f /s %8.2f\n", "connection rate", cd, cf, cf/cd)
	if fwdBytes > 0 {
		perGB := fwdCPU.Seconds() / (float64(fwdBytes) / 1e9)
		fmt.Printf("forwarder CPU time: %.0f ms per GB forwarded (one core forwards %.1f GB/s; warm-up included)\n", perGB*1000, 1/perGB)
	}
	fmt.Printf("forwarder RSS with %d connections open: %d KiB (peak %d KiB, %.1f KiB a connection)\n", conns, rss, hwm, float64(rss)/float64(conns))
	verdict := "met"
	if tf/td < 0.8 {
		verdict = "NOT met"
	}
	fmt.Printf("goal: forwarded throughput >= 0.8x direct: %s (%.2f)\n", verdict, tf/td)
	return nil
}

// appPair starts the two apps; the IPv4-only app's port must be free on
// ::1 for the forwarder.
func appPair() (*app, *app, error) {
	for range 20 {
		v4, err := startApp("tcp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		probe, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", v4.port()))
		if err != nil {
			v4.ln.Close()
			continue
		}
		probe.Close()
		v6, err := startApp("tcp6", "[::1]:0")
		if err != nil {
			v4.ln.Close()
			return nil, nil, err
		}
		return v4, v6, nil
	}
	return nil, nil, errors.New("no port free on both 127.0.0.1 and ::1")
}

func waitDial(ctx context.Context, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp6", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// throughput sends from streams connections for d; bytes per second as
// the app counted them, and the bytes moved with the warm-up.
func throughput(ctx context.Context, addr string, a *app, streams int, d time.Duration) (float64, int64, error) {
	buf := make([]byte, 256<<10)
	buf[0] = 's'
	var cs []net.Conn
	for range streams {
		c, err := net.Dial("tcp6", addr)
		if err != nil {
			return 0, 0, err
		}
		cs = append(cs, c)
	}
	// What the app received, or (a nil: the app is in another process)
	// what the clients wrote, which is as much but for a few MB in flight.
	var sent atomic.Int64
	count := sent.Load
	if a != nil {
		count = a.received.Load
	}
	total0 := count()
	// The first write carries the 's'; warm up for 200ms, then count.
	var wg sync.WaitGroup
	stopAt := time.Now().Add(200*time.Millisecond + d)
	for _, c := range cs {
		wg.Go(func() {
			c.Write(buf[:1])
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				n, err := c.Write(buf)
				sent.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	start, before := time.Now(), count()
	wg.Wait()
	got := count() - before
	took := time.Since(start)
	for _, c := range cs {
		c.Close()
	}
	return float64(got) / took.Seconds(), count() - total0, ctx.Err()
}

// connRate counts request-reply connections per second from 16 workers.
func connRate(ctx context.Context, addr string, d time.Duration) (float64, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stopAt := time.Now().Add(d)
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			buf := make([]byte, 8)
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				c, err := net.Dial("tcp6", addr)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				c.Write([]byte{'r'})
				if _, err := io.ReadAtLeast(c, buf, 3); err != nil {
					firstErr.CompareAndSwap(nil, err)
					c.Close()
					return
				}
				c.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, fmt.Errorf("connection rate to %s: %w", addr, err)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), ctx.Err()
}

// hold opens n connections through the forwarder, each carrying a
// request and its reply, and leaves them open.
func hold(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	var cs []net.Conn
	buf := make([]byte, 8)
	for i := range n {
		c, err := net.Dial("tcp6", addr)
		if err == nil {
			cs = append(cs, c)
			c.Write([]byte{'h'})
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAtLeast(c, buf, 3)
			c.SetReadDeadline(time.Time{})
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, fmt.Errorf("connection %d of %d: %w", i+1, n, err)
		}
	}
	return cs, nil
}

// heldRSS opens conns connections through the forwarder (see hold) and
// reads the forwarder's VmRSS and VmHWM (KiB) while all are open.
func heldRSS(ctx context.Context, addr string, pid, conns int) (int, int, error) {
	cs, err := hold(ctx, addr, conns)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return statusKiB(string(status), "VmRSS:"), statusKiB(string(status), "VmHWM:"), nil
}

func statusKiB(status, key string) int {
	for l := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func numCPU() int { return runtime.NumCPU() }

// raiseNoFile lifts the soft file limit to at least n (the held
// connections need two descriptors each in this process).
func raiseNoFile(n int) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < uint64(n) {
		l.Cur = min(uint64(n), l.Max)
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// cpuTime is the user and system CPU time of process pid so far.
func cpuTime(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: utime is the 14th
	// field of the line, stime the 15th (proc(5)), in clock ticks.
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// copyExecutable copies the bench's binary to a file anyone may run.
func copyExecutable(self string) (string, error) {
	in, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp("", "mbctl-bench-forwarder-")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	err = errors.Join(err, out.Chmod(0o755), out.Close())
	if err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("copying the bench for the forwarder's user: %w", err)
	}
	return out.Name(), nil
}
