package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/forward"
)

// The -link mode: the apps and the forwarder in one new network
// namespace (the machine), the client in another, joined by a veth pair
// as a machine and its host are; addresses from fc00::/64, standing for
// the machine's ygg address (fc00::1) and a client on the mesh (fc00::2).
// The namespaces are made by unshare(1) and end with their processes;
// nothing is added to the bench's own namespace. The forwarder runs in
// the machine's process, as root.
const (
	roleEnv      = "MBCTL_BENCH_FORWARD_ROLE"
	linkMachine  = "fc00::1"
	linkClient   = "fc00::2"
	linkPrefixes = 64
	// pathEnv names the path of a role's run: "veth" (the default) or
	// "ygg", where machineEnv is the machine's address (its host's
	// Yggdrasil address; see ygg.go).
	pathEnv    = "MBCTL_BENCH_FORWARD_PATH"
	machineEnv = "MBCTL_BENCH_FORWARD_MACHINE"
)

// rolePath is the path a role process measures and the machine's address
// on it.
func rolePath() (name, machine string) {
	name, machine = os.Getenv(pathEnv), os.Getenv(machineEnv)
	if name == "" {
		name = "veth"
	}
	if machine == "" {
		machine = linkMachine
	}
	return name, machine
}

// runLink runs the throughput and connection-rate cases across the veth.
func runLink(ctx context.Context, rounds int, d time.Duration, streams int) error {
	start := func(role string) (*exec.Cmd, io.WriteCloser, *bufio.Reader, error) {
		return startRole(ctx, []string{"unshare", "--net", "--"}, role, nil, rounds, d, streams)
	}
	m, mIn, mOut, err := start("machine")
	if err != nil {
		return err
	}
	defer func() { mIn.Close(); m.Wait() }()
	c, cIn, cOut, err := start("client")
	if err != nil {
		return err
	}
	defer func() { cIn.Close(); c.Wait() }()
	if err := joinNamespaces(m.Process.Pid, c.Process.Pid); err != nil {
		return err
	}
	return runRoles(mIn, mOut, cIn, cOut)
}

// startRole runs the bench as role (machine or client) under the command
// prefix that puts it in its network namespace, with env added, and waits
// for its first line.
func startRole(ctx context.Context, prefix []string, role string, env []string, rounds int, d time.Duration, streams int) (*exec.Cmd, io.WriteCloser, *bufio.Reader, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	args := append(slices.Clone(prefix[1:]), self, "-rounds", strconv.Itoa(rounds), "-duration", d.String(), "-streams", strconv.Itoa(streams))
	cmd := exec.CommandContext(ctx, prefix[0], args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("starting the %s namespace: %w", role, err)
	}
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || line != "ns\n" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, nil, fmt.Errorf("the %s namespace did not start: %q %v", role, line, err)
	}
	return cmd, in, r, nil
}

// runRoles starts the machine's apps, hands their ports to the client and
// copies the client's report to stdout until it ends.
func runRoles(mIn io.Writer, mOut *bufio.Reader, cIn io.Writer, cOut io.Reader) error {
	fmt.Fprintln(mIn, "go")
	ready, err := mOut.ReadString('\n')
	if err != nil {
		return fmt.Errorf("the machine namespace's apps: %w", err)
	}
	fmt.Fprint(cIn, ready) // "ready PORT4 PORT6 PORTREF"
	_, err = io.Copy(os.Stdout, cOut)
	return err
}

// joinNamespaces adds the veth pair between the network namespaces of
// processes m and c, addressed, and brings up loopback in both.
func joinNamespaces(m, c int) error {
	nsM, err := netns.GetFromPid(m)
	if err != nil {
		return fmt.Errorf("opening the machine namespace: %w", err)
	}
	defer nsM.Close()
	nsC, err := netns.GetFromPid(c)
	if err != nil {
		return fmt.Errorf("opening the client namespace: %w", err)
	}
	defer nsC.Close()
	hM, err := netlink.NewHandleAt(nsM)
	if err != nil {
		return err
	}
	defer hM.Close()
	hC, err := netlink.NewHandleAt(nsC)
	if err != nil {
		return err
	}
	defer hC.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "m0"}, PeerName: "c0", PeerNamespace: netlink.NsFd(int(nsC))}
	if err := hM.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding the veth pair: %w", err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		link, addr string
	}{{hM, "m0", linkMachine}, {hC, "c0", linkClient}} {
		for _, name := range []string{"lo", side.link} {
			l, err := side.h.LinkByName(name)
			if err != nil {
				return fmt.Errorf("finding %s: %w", name, err)
			}
			if name != "lo" {
				a, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", side.addr, linkPrefixes))
				a.Flags = unix.IFA_F_NODAD
				if err := side.h.AddrReplace(l, a); err != nil {
					return fmt.Errorf("adding %s to %s: %w", side.addr, name, err)
				}
			}
			if err := side.h.LinkSetUp(l); err != nil {
				return fmt.Errorf("bringing up %s: %w", name, err)
			}
		}
	}
	return nil
}

// linkRole runs the machine or client side of -link; it returns the exit
// status.
func linkRole(ctx context.Context, role string, rounds int, d time.Duration, streams int) int {
	fmt.Println("ns") // the namespace exists: unshare made it before the exec
	in := bufio.NewReader(os.Stdin)
	var err error
	switch role {
	case "machine":
		err = linkMachineRole(ctx, in)
	case "client":
		err = linkClientRole(ctx, in, rounds, d, streams)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forward bench (%s namespace): %v\n", role, err)
		return 1
	}
	return 0
}

func linkMachineRole(ctx context.Context, in *bufio.Reader) error {
	if _, err := in.ReadString('\n'); err != nil { // "go": the veth is there
		return err
	}
	v4, err := startApp("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	_, addr := rolePath()
	v6, err := startApp("tcp6", "["+addr+"]:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go forward.Run(ctx, forward.Options{
		Ports: []man8env.Port{{Num: uint16(v4.port()), Proto: man8env.TCP}},
		Ygg:   netip.MustParseAddr(addr),
		Addrs: func() ([]netip.Addr, error) { return nil, nil },
		Log:   slog.New(slog.DiscardHandler),
	})
	if err := waitDial(ctx, fmt.Sprintf("[%s]:%d", addr, v4.port()), 10*time.Second); err != nil {
		return fmt.Errorf("the forwarder never listened: %w", err)
	}
	refPort, stopRef, err := startReferenceProxy(ctx, addr, v4.port())
	if err != nil {
		return err
	}
	defer stopRef()
	fmt.Printf("ready %d %d %d\n", v4.port(), v6.port(), refPort)
	io.Copy(io.Discard, in) // until the bench ends
	return nil
}

// startReferenceProxy runs HAProxy, if installed, as the reference
// user-space proxy: TCP mode, splicing (option splice-auto), one thread per
// CPU, from [addr]:port to the IPv4-only app. It returns the port, 0
// without HAProxy, and how to stop it.
func startReferenceProxy(ctx context.Context, addr string, appPort int) (int, func(), error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		fmt.Fprintln(os.Stderr, "forward bench: no haproxy on PATH (scripts/install-deps.sh bench installs it): no reference proxy")
		return 0, func() {}, nil
	}
	ln, err := net.Listen("tcp6", "["+addr+"]:0")
	if err != nil {
		return 0, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "mbctl-bench-haproxy-")
	if err != nil {
		return 0, nil, err
	}
	conf := fmt.Sprintf(`global
	maxconn 4000
defaults
	mode tcp
	option splice-auto
	timeout connect 5s
	timeout client 5m
	timeout server 5m
listen reference
	bind [%s]:%d
	server app 127.0.0.1:%d
`, addr, port, appPort)
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return 0, nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", cfg)
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return 0, nil, fmt.Errorf("starting haproxy: %w", err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	if err := waitDial(ctx, fmt.Sprintf("[%s]:%d", addr, port), 10*time.Second); err != nil {
		stop()
		return 0, nil, fmt.Errorf("haproxy never listened on port %d: %w", port, err)
	}
	return port, stop, nil
}

func linkClientRole(ctx context.Context, in *bufio.Reader, rounds int, d time.Duration, streams int) error {
	line, err := in.ReadString('\n')
	if err != nil {
		return err
	}
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "ready" {
		return fmt.Errorf("the machine said %q", line)
	}
	path, addr := rolePath()
	targets := []struct{ name, addr string }{
		{"direct", "[" + addr + "]:" + f[2]},
		{"forwarded", "[" + addr + "]:" + f[1]},
	}
	if f[3] != "0" {
		targets = append(targets, struct{ name, addr string }{"haproxy", "[" + addr + "]:" + f[3]})
	}
	if err := waitDial(ctx, targets[0].addr, 10*time.Second); err != nil {
		return err
	}
	switch path {
	case "ygg":
		fmt.Printf("over Yggdrasil between two testbed hosts (machine %s): forwarded %s, direct %s", addr, targets[1].addr, targets[0].addr)
	default:
		fmt.Printf("across a veth pair (client %s, machine %s): forwarded %s, direct %s", linkClient, addr, targets[1].addr, targets[0].addr)
	}
	if len(targets) > 2 {
		fmt.Printf(", reference proxy (HAProxy, splicing) %s", targets[2].addr)
	}
	fmt.Println()
	thr, rate := make([][]float64, len(targets)), make([][]float64, len(targets))
	for r := range rounds {
		for k := range targets {
			i := (k + r) % len(targets) // rotate who goes first
			bps, _, err := throughput(ctx, targets[i].addr, nil, streams, d)
			if err != nil {
				return err
			}
			cps, err := connRate(ctx, targets[i].addr, d)
			if err != nil {
				return err
			}
			thr[i], rate[i] = append(thr[i], bps), append(rate[i], cps)
			fmt.Printf("%s round %d %-9s throughput %8.0f MB/s   connections %7.0f /s\n", path, r+1, targets[i].name, bps/1e6, cps)
		}
	}
	td, tf, cd, cf := median(thr[0]), median(thr[1]), median(rate[0]), median(rate[1])
	fmt.Printf("%s median throughput %.0f MB/s direct, %.0f MB/s forwarded: %.2f\n", path, td/1e6, tf/1e6, tf/td)
	fmt.Printf("%s median connection rate %.0f /s direct, %.0f /s forwarded: %.2f\n", path, cd, cf, cf/cd)
	if len(targets) > 2 {
		th, ch := median(thr[2]), median(rate[2])
		fmt.Printf("%s median reference proxy (HAProxy): throughput %.0f MB/s, %.2f of direct (forwarder/HAProxy %.2f); connection rate %.0f /s, %.2f of direct (forwarder/HAProxy %.2f)\n",
			path, th/1e6, th/td, tf/th, ch, ch/cd, cf/ch)
	}
	verdict := "met"
	if tf/td < 0.8 {
		verdict = "NOT met"
	}
	fmt.Printf("goal over the %s path: forwarded throughput >= 0.8x direct: %s (%.2f)\n", path, verdict, tf/td)
	return nil
}
