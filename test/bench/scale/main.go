// Command scale measures many machines of one image on one host (issue 16,
// "Performance and scale"): -n strict machines (one shared read-only root)
// in a testbed host (real systemd-networkd and yggdrasil in a network
// namespace), started with `mbctl machines run`
//
//   - together: all at once, timed from the first start until every app
//     answers HTTP on its machine's Yggdrasil address; and
//   - one by one: each started once the one before answers, each timed.
//
// After each phase, with all machines up, it reads the memory of every
// machine: the PSS (and RSS) of its systemd-nspawn and all its descendants
// (nspawn's container init, man8s-init, the app) from
// /proc/PID/smaps_rollup, and the drop of the host's MemAvailable, which
// also holds what the kernel spends per machine. In the one-by-one phase
// it reads both after every machine, so the marginal cost of each added
// machine shows how it grows. Run as root.
//
//	go run ./test/bench/scale [-mbctl bin/mbctl] [-n 20] [-rounds 1] [-json FILE]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/proc"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/test/bench/hostload"
)

// options are the flags.
type options struct {
	mbctl, workdir, jsonPath string
	n, rounds                int
	timeout                  time.Duration
	verbose                  bool
}

func main() {
	var o options
	flag.StringVar(&o.mbctl, "mbctl", "", "the mbctl to measure, with man8s-init beside it (default: go build ./cmd/mbctl and ./cmd/man8s-init into the run's temp dir)")
	flag.IntVar(&o.n, "n", 20, "machines")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of both phases (medians reported)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to `FILE`")
	flag.StringVar(&o.workdir, "workdir", os.TempDir(), "where the run's temp dir goes (mbctl's state, the registry)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long a phase may wait for its machines to answer")
	flag.BoolVar(&o.verbose, "v", false, "print each machine's output when it stops")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "scale bench: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale bench: "+format+"\n", args...)
}

// appScript serves the machine's ROLE (its name) over HTTP on [::]:8080
// from its /www volume.
const appScript = `echo "$ROLE" > /www/index.html
exec httpd -f -p [::]:8080 -h /www`

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, systemd-nspawn)")
	}
	if o.n < 1 || o.rounds < 1 {
		return errors.New("-n and -rounds must be at least 1")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "unshare", "yggdrasil", registry.DefaultBinary} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make deps)", tool)
		}
	}
	bb, err := ociimage.StaticBusybox()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(o.workdir, "man8s-scale-bench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(work)) }()
	mbctlBin := o.mbctl
	if mbctlBin == "" {
		if mbctlBin, err = buildMbctl(ctx, work); err != nil {
			return err
		}
	} else if mbctlBin, err = filepath.Abs(mbctlBin); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(mbctlBin), "man8s-init")); err != nil {
		return fmt.Errorf("no man8s-init beside %s: %w", mbctlBin, err)
	}
	version, _ := exec.CommandContext(ctx, mbctlBin, "version").Output()

	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		return fmt.Errorf("starting the registry: %w", err)
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	ref := reg.Addr() + "/bench/scale:1"
	script, err := ociimage.Layer(ociimage.File("app.sh", []byte(appScript), 0o755))
	if err != nil {
		return err
	}
	img, err := ociimage.BusyboxApp(bb, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/app.sh"},
		Env:        []string{ociimage.DefaultPath, "ROLE=none"},
		Volumes:    []string{"/www"},
	}, script)
	if err != nil {
		return err
	}
	if _, err := ociimage.Push(ctx, img, ref); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}

	h, err := testbed.NewHost(ctx, testbed.Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("starting the testbed: %w", err)
	}
	defer func() { err = errors.Join(err, h.Close()) }()
	// As in the startup bench: the probe's neighbour discovery retries
	// every 10 ms, so that a solicitation sent before a machine has its
	// address does not add a second (retrans_time) to its time.
	if out, err := h.Command(ctx, "sysctl", "-qw", "net.ipv6.neigh."+h.Bridge+".retrans_time_ms=10").CombinedOutput(); err != nil {
		return fmt.Errorf("sysctl in the testbed: %v %s", err, out)
	}
	mb, err := testbed.NewMbctl(h, mbctlBin, filepath.Join(work, "mbctl"), "")
	if err != nil {
		return err
	}

	b := &bench{h: h, mb: mb, opts: o}
	start := time.Now()
	for i := range o.n {
		name := fmt.Sprintf("m%02d", i+1)
		addr, err := yggaddr.Address(h.Ygg.Subnet, name)
		if err != nil {
			return err
		}
		out, err := mb.Command(ctx, "machines", "pull", "--yes", "--quiet", "--no-probe", "--strict",
			"--volume", "/www=data", "--env", "ROLE="+name, ref, name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mbctl machines pull %s: %v\n%s", name, err, out)
		}
		b.machines = append(b.machines, &machine{name: name, url: "http://" + netip.AddrPortFrom(addr, 8080).String() + "/"})
	}
	logf("testbed %s; %d strict machines of %s pulled in %s (untimed)", h.Name, o.n, ref, secs(time.Since(start)))
	defer func() { err = errors.Join(err, b.stopAll()) }()

	res := results{Machines: o.n, Mbctl: strings.TrimSpace(string(version)), Image: ref, Load: []string{hostload.Average()}}
	for r := range o.rounds {
		var rr round
		// Alternate the order so that neither phase always runs on a
		// host the other has just used.
		first, second := b.together, b.oneByOne
		if r%2 == 1 {
			first, second = second, first
		}
		for _, phase := range []func(context.Context, *round) error{first, second} {
			if err := phase(ctx, &rr); err != nil {
				return fmt.Errorf("round %d: %w", r+1, err)
			}
			if err := b.stopAll(); err != nil {
				return fmt.Errorf("round %d: stopping the machines: %w", r+1, err)
			}
		}
		res.Rounds = append(res.Rounds, rr)
	}
	res.Load = append(res.Load, hostload.Average())
	report(os.Stdout, &res)
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(&res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// buildMbctl builds mbctl and man8s-init into dir.
func buildMbctl(ctx context.Context, dir string) (string, error) {
	for _, p := range []string{"mbctl", "man8s-init"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, p), "./cmd/"+p)
		if p == "man8s-init" {
			build.Env = append(os.Environ(), "CGO_ENABLED=0") // it runs in images without a libc
		}
		if out, err := build.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", p, err, out)
		}
	}
	return filepath.Join(dir, "mbctl"), nil
}

type bench struct {
	h        *testbed.Host
	mb       *testbed.Mbctl
	opts     options
	machines []*machine
}

// machine is one pulled machine and, while it runs, its `machines run`.
type machine struct {
	name, url string
	cmd       *exec.Cmd
	out       *proc.Buffer
	done      chan struct{}
	err       error
}

// start runs `mbctl machines run NAME` in its own process group (mbctl
// and its systemd-nspawn can be killed together if the stop hangs).
func (b *bench) start(m *machine) error {
	m.out, m.done = &proc.Buffer{}, make(chan struct{})
	m.cmd = b.mb.Command(context.Background(), "machines", "run", m.name)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		m.cmd = nil
		return fmt.Errorf("starting machine %s: %w", m.name, err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.done) }()
	return nil
}

// stop ends m's `machines run` by SIGTERM (an orderly stop) and waits;
// after 30 s it kills the process group it started.
func (b *bench) stop(m *machine) error {
	if m.cmd == nil {
		return nil
	}
	defer func() { m.cmd = nil }()
	select {
	case <-m.done:
	default:
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
			return fmt.Errorf("machine %s did not stop in 30 s; killed:\n%s", m.name, tail(m.out.String()))
		}
	}
	if b.opts.verbose {
		fmt.Fprintf(os.Stderr, "--- %s:\n%s", m.name, m.out.String())
	}
	return nil
}

// stopAll stops every running machine at once.
func (b *bench) stopAll() error {
	errs := make([]error, len(b.machines))
	var wg sync.WaitGroup
	for i, m := range b.machines {
		wg.Go(func() { errs[i] = b.stop(m) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitAnswer polls m's app over its Yggdrasil address from the host's
// namespace until it answers 200 with the machine's name, and returns
// when that was.
func (b *bench) waitAnswer(ctx context.Context, m *machine) (time.Time, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return b.h.DialContext(ctx, network, a)
		},
	}}
	defer client.CloseIdleConnections()
	var last error
	for {
		if ok, err := get(ctx, client, m.url, m.name); ok {
			return time.Now(), nil
		} else {
			last = err
		}
		select {
		case <-m.done:
			return time.Time{}, fmt.Errorf("machine %s stopped before it answered (%v):\n%s", m.name, m.err, tail(m.out.String()))
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("machine %s did not answer on %s: %v:\n%s", m.name, m.url, last, tail(m.out.String()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, c *http.Client, url, want string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	if got := strings.TrimSpace(string(body)); resp.StatusCode != http.StatusOK || got != want {
		return false, fmt.Errorf("status %d, body %q", resp.StatusCode, got)
	}
	return true, nil
}

// phase is one phase's figures.
type phase struct {
	// Total is the wall clock from the first machine's start until the
	// last one answered; Answer each machine's from its own start.
	Total  time.Duration   `json:"total_ns"`
	Answer []time.Duration `json:"answer_ns"`
	// Memory is each machine's (systemd-nspawn and its descendants), Mbctl
	// each machine's foreground `mbctl machines run`, with all up.
	Memory []memory `json:"memory"`
	Mbctl  []memory `json:"mbctl_memory"`
	// ByComm sums Memory by process name over all machines.
	ByComm map[string]memory `json:"memory_by_process_name"`
	// HostBefore and HostAfter are the host's meminfo before the first
	// start and with all up.
	HostBefore hostMemory `json:"host_before"`
	HostAfter  hostMemory `json:"host_after"`
	// Growth (one by one only): after machine k answered, the PSS of
	// machines 1 to k summed, and the host's meminfo.
	GrowthPSS  []int64      `json:"growth_pss_kib,omitempty"`
	GrowthHost []hostMemory `json:"growth_host,omitempty"`
}

type round struct {
	Together *phase `json:"together"`
	OneByOne *phase `json:"one_by_one"`
}

type results struct {
	Machines int      `json:"machines"`
	Mbctl    string   `json:"mbctl"`
	Image    string   `json:"image"`
	Load     []string `json:"loadavg"`
	Rounds   []round  `json:"rounds"`
}

// settle waits, before a phase, until the memory the kernel holds
// unreclaimably has stopped falling (the machines stopped before leave
// namespaces and cgroups that the kernel frees later), polling every
// 250 ms for at most 20 s, and returns the host's memory then.
func settle(ctx context.Context) (hostMemory, error) {
	prev, err := readMeminfo("/proc")
	if err != nil {
		return prev, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for stable := 0; stable < 2 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return prev, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		cur, err := readMeminfo("/proc")
		if err != nil {
			return cur, err
		}
		if prev.Kernel-cur.Kernel < 256 { // KiB
			stable++
		} else {
			stable = 0
		}
		prev = cur
	}
	return prev, nil
}

// together starts every machine at once and waits until all answer.
func (b *bench) together(ctx context.Context, r *round) error {
	logf("together: starting %d machines", len(b.machines))
	p := &phase{Answer: make([]time.Duration, len(b.machines))}
	var err error
	if p.HostBefore, err = settle(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
	defer cancel()
	starts := make([]time.Time, len(b.machines))
	t0 := time.Now()
	for i, m := range b.machines {
		starts[i] = time.Now()
		if err := b.start(m); err != nil {
			return err
		}
	}
	errs := make([]error, len(b.machines))
	answered := make([]time.Time, len(b.machines))
	var wg sync.WaitGroup
	for i, m := range b.machines {
		wg.Go(func() { answered[i], errs[i] = b.waitAnswer(ctx, m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var lastAt time.Time
	for i := range b.machines {
		p.Answer[i] = answered[i].Sub(starts[i])
		if answered[i].After(lastAt) {
			lastAt = answered[i]
		}
	}
	p.Total = lastAt.Sub(t0)
	if err := b.readMemory(p); err != nil {
		return err
	}
	logf("together: all %d answering after %s", len(b.machines), secs(p.Total))
	r.Together = p
	return nil
}

// oneByOne starts each machine once the one before answers.
func (b *bench) oneByOne(ctx context.Context, r *round) error {
	logf("one by one: starting %d machines", len(b.machines))
	p := &phase{}
	var err error
	if p.HostBefore, err = settle(ctx); err != nil {
		return err
	}
	for i, m := range b.machines {
		mctx, cancel := context.WithTimeout(ctx, b.opts.timeout)
		t0 := time.Now()
		err := b.start(m)
		var at time.Time
		if err == nil {
			at, err = b.waitAnswer(mctx, m)
		}
		cancel()
		if err != nil {
			return err
		}
		p.Answer = append(p.Answer, at.Sub(t0))
		p.Total += at.Sub(t0)
		// Untimed: the memory of the machines up so far.
		mem, _, err := b.memory(b.machines[:i+1], nil)
		if err != nil {
			return err
		}
		host, err := readMeminfo("/proc")
		if err != nil {
			return err
		}
		p.GrowthPSS, p.GrowthHost = append(p.GrowthPSS, sum(pss(mem))), append(p.GrowthHost, host)
	}
	if err := b.readMemory(p); err != nil {
		return err
	}
	logf("one by one: all %d answering, %s in sum", len(b.machines), secs(p.Total))
	r.OneByOne = p
	return nil
}

func (b *bench) readMemory(p *phase) error {
	var err error
	p.ByComm = map[string]memory{}
	if p.Memory, p.Mbctl, err = b.memory(b.machines, p.ByComm); err != nil {
		return err
	}
	p.HostAfter, err = readMeminfo("/proc")
	return err
}

// memory reads the memory of each of ms: its systemd-nspawn's subtree, and
// its `mbctl machines run` (the process started: nsenter, unshare and sh
// exec into it) without that subtree. byComm, if not nil, gets the
// machines' memory by process name.
func (b *bench) memory(ms []*machine, byComm map[string]memory) (machines, mbctls []memory, err error) {
	t, err := readProcTable("/proc")
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		pid := m.cmd.Process.Pid
		nspawn, ok := t.find(pid, "systemd-nspawn")
		if !ok {
			return nil, nil, fmt.Errorf("machine %s: no systemd-nspawn under PID %d (%s)", m.name, pid, t.comm[pid])
		}
		mm, err := t.treeMemoryBy(nspawn, byComm)
		if err != nil {
			return nil, nil, fmt.Errorf("machine %s: %w", m.name, err)
		}
		all, err := t.treeMemory(pid)
		if err != nil {
			return nil, nil, fmt.Errorf("machine %s: %w", m.name, err)
		}
		machines = append(machines, mm)
		mbctls = append(mbctls, memory{RSS: all.RSS - mm.RSS, PSS: all.PSS - mm.PSS, Procs: all.Procs - mm.Procs})
	}
	return machines, mbctls, nil
}

// tail returns the last 20 lines of s.
func tail(s string) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "")
}
