// Package forward is man8s-init's port forwarder (issue 15): it makes an
// app that listens only on IPv4 reachable on the machine's Yggdrasil and
// ULA addresses. Netfilter cannot NAT between address families and IPv6
// has no route_localnet, so no rule can send [ygg]:port to 127.0.0.1:port;
// the forwarder is a userspace proxy, as docker-proxy is.
//
// For each port it is given (the image's ExposedPorts, MAN8S_FORWARD_PORTS)
// it watches the machine's listening sockets in /proc/net. A port the app
// listens on over IPv6 ([::] or the address itself) is left alone; a port
// it listens on over IPv4 only gets a listener on [address]:port
// (IPV6_V6ONLY) whose connections it forwards to the app's IPv4 listener.
// The app then sees 127.0.0.1 as the client, unless it asked for PROXY
// protocol v2 (MAN8S_FORWARD_PROXY_PROTOCOL=1).
package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// Defaults of Options.
const (
	DefaultMaxConns = 4096
	DefaultMaxFlows = 1024
	DefaultUDPIdle  = 60 * time.Second
	DefaultSettle   = 500 * time.Millisecond
	DefaultMaxPoll  = 2 * time.Second
	// reportAfter is when the ports nothing listens on are logged.
	reportAfter = 10 * time.Second
	firstPoll   = 20 * time.Millisecond
)

// Options say what a Forwarder forwards.
type Options struct {
	// Ports are the ports to watch.
	Ports []man8env.Port
	// Ygg is the machine's Yggdrasil address (invalid: none).
	Ygg netip.Addr
	// Addrs returns the machine's other IPv6 addresses to forward on (the
	// ULA); default: the global unicast IPv6 addresses of its links
	// outside the overlay's 200::/7.
	Addrs func() ([]netip.Addr, error)
	// Off only watches and reports: a port the app listens on over IPv4
	// only is ReachOff, and nothing is forwarded (MAN8S_FORWARD_PORTS=off).
	Off bool
	// ProxyProtocol sends a PROXY protocol v2 header to the app before
	// each connection's data (each datagram's, for UDP).
	ProxyProtocol bool
	// ProcNet is the /proc/net of the machine (default /proc/net).
	ProcNet string
	// StatePath is where the reachability is published (empty: nowhere).
	StatePath string
	// Log receives a line for each forward and each port's reachability.
	Log *slog.Logger
	// MaxConns bounds the TCP connections forwarded at once, over all
	// ports (default DefaultMaxConns); MaxFlows the UDP clients of one
	// port (DefaultMaxFlows), UDPIdle how long a UDP flow lives without
	// traffic (DefaultUDPIdle).
	MaxConns int
	MaxFlows int
	UDPIdle  time.Duration
	// Settle is how long a port must be IPv4-only before it is
	// forwarded (DefaultSettle): an app that binds 0.0.0.0 and then [::]
	// would find [::] taken otherwise. MaxPoll is the longest interval
	// between two looks at the sockets (DefaultMaxPoll).
	Settle  time.Duration
	MaxPoll time.Duration
}

// fwdKey is one forward: a port on one address.
type fwdKey struct {
	port man8env.Port
	addr netip.Addr
}

// fwd is an open forward.
type fwd struct {
	target netip.AddrPort
	close  func()
	err    error     // the listen failed: tried again after retryAfter
	at     time.Time // when it was opened or failed
}

// retryAfter is when a failed listen is tried again (the address may
// have been tentative, the port taken by another process for a while).
const retryAfter = 10 * time.Second

// Forwarder watches the ports and forwards them; see Run.
type Forwarder struct {
	opts    Options
	slots   chan struct{}
	pipes   *pipePool
	fwds    map[fwdKey]*fwd
	since   map[fwdKey]time.Time // IPv4-only since
	failed  map[fwdKey]string    // the last listen error logged
	said    map[man8env.Port]string
	last    []byte // the last state published
	started time.Time
}

// Run forwards until ctx ends, then closes every listener and connection.
// It returns an error only when it cannot start.
func Run(ctx context.Context, opts Options) error {
	f, err := New(opts)
	if err != nil {
		return err
	}
	return f.Run(ctx)
}

// New checks opts and fills in the defaults.
func New(opts Options) (*Forwarder, error) {
	if opts.ProcNet == "" {
		opts.ProcNet = "/proc/net"
	}
	if opts.Addrs == nil {
		opts.Addrs = func() ([]netip.Addr, error) { return LinkAddrs(opts.Ygg) }
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.MaxConns = cmpOr(opts.MaxConns, DefaultMaxConns)
	opts.MaxFlows = cmpOr(opts.MaxFlows, DefaultMaxFlows)
	opts.UDPIdle = cmpOr(opts.UDPIdle, DefaultUDPIdle)
	opts.Settle = cmpOr(opts.Settle, DefaultSettle)
	opts.MaxPoll = cmpOr(opts.MaxPoll, DefaultMaxPoll)
	if opts.Ygg.IsValid() && !opts.Ygg.Is6() {
		return nil, fmt.Errorf("the Yggdrasil address %s is not IPv6", opts.Ygg)
	}
	return &Forwarder{
		opts:   opts,
		slots:  make(chan struct{}, opts.MaxConns),
		pipes:  newPipePool(),
		fwds:   map[fwdKey]*fwd{},
		since:  map[fwdKey]time.Time{},
		failed: map[fwdKey]string{},
		said:   map[man8env.Port]string{},
	}, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run watches the sockets, polling with a growing interval, until ctx
// ends.
func (f *Forwarder) Run(ctx context.Context) error {
	f.started = time.Now()
	defer func() {
		for _, fw := range f.fwds {
			if fw.close != nil {
				fw.close()
			}
		}
		f.pipes.close()
	}()
	interval := firstPoll
	reported := false
	for {
		changed := f.poll(ctx)
		if !reported && time.Since(f.started) >= reportAfter {
			reported = true
			f.reportSilent()
		}
		if changed {
			interval = firstPoll
		} else {
			interval = min(interval*3/2, f.opts.MaxPoll)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// poll looks at the sockets once and opens the forwards due; it reports
// whether anything is pending or changed (to look again soon).
func (f *Forwarder) poll(ctx context.Context) bool {
	ls, err := ReadListeners(f.opts.ProcNet)
	if err != nil {
		f.opts.Log.Warn(err.Error())
		return false
	}
	ls = slices.DeleteFunc(ls, func(l Listener) bool { return f.ours(l) })
	addrs := f.addrs()
	now := time.Now()
	busy := false
	st := man8env.Reachability{ProxyProtocol: f.opts.ProxyProtocol, Ports: []man8env.PortReach{}}
	if f.opts.Ygg.IsValid() {
		st.YggAddress = f.opts.Ygg.String()
	}
	for _, p := range f.opts.Ports {
		pr := man8env.PortReach{Port: p.String()}
		for i, a := range addrs {
			k := fwdKey{p, a}
			reach, target := f.decide(ctx, k, ls, now, &busy)
			if t := target; t.IsValid() {
				pr.Target = t.String()
			}
			if fw := f.fwds[k]; fw != nil && fw.err != nil {
				pr.Error = fw.err.Error()
			}
			switch {
			case i == 0 && f.opts.Ygg.IsValid():
				pr.Ygg = reach
			case pr.ULA == "" || pr.ULA == reach:
				pr.ULA = reach
			default:
				pr.ULA = reach + " (on some addresses)"
			}
		}
		if !f.opts.Ygg.IsValid() {
			pr.Ygg = "no ygg address"
		}
		st.Ports = append(st.Ports, pr)
		f.say(p, pr, ls)
	}
	f.publish(st)
	return busy
}

// addrs returns the Yggdrasil address first, then the others.
func (f *Forwarder) addrs() []netip.Addr {
	var out []netip.Addr
	if f.opts.Ygg.IsValid() {
		out = append(out, f.opts.Ygg)
	}
	more, err := f.opts.Addrs()
	if err != nil {
		f.opts.Log.Warn("listing the machine's addresses", "err", err)
	}
	for _, a := range more {
		if a != f.opts.Ygg && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// ours reports whether l is one of the forwarder's own listeners (those
// it holds; a failed one is not).
func (f *Forwarder) ours(l Listener) bool {
	fw := f.fwds[fwdKey{man8env.Port{Num: l.Addr.Port(), Proto: l.Proto}, l.Addr.Addr()}]
	return fw != nil && fw.err == nil
}

// decide says how k is reached, opening its forward when it is due.
func (f *Forwarder) decide(ctx context.Context, k fwdKey, ls []Listener, now time.Time, busy *bool) (string, netip.AddrPort) {
	if fw := f.fwds[k]; fw != nil {
		if fw.err == nil {
			return man8env.ReachForwarded, fw.target
		}
		if now.Sub(fw.at) < retryAfter {
			return man8env.ReachFailed, fw.target
		}
		delete(f.fwds, k)
		f.since[k] = now.Add(-f.opts.Settle) // try again, settled already
	}
	reach, target := Decide(k.port, k.addr, ls)
	if reach != man8env.ReachForwarded {
		delete(f.since, k)
		return reach, netip.AddrPort{}
	}
	if f.opts.Off {
		return man8env.ReachOff, target
	}
	first, ok := f.since[k]
	if !ok {
		f.since[k] = now
		first = now
	}
	if now.Sub(first) < f.opts.Settle {
		*busy = true
		return man8env.ReachNone, target
	}
	delete(f.since, k)
	*busy = true
	fw := &fwd{target: target, at: now}
	fw.close, fw.err = f.open(ctx, k, target)
	f.fwds[k] = fw
	local := netip.AddrPortFrom(k.addr, k.port.Num)
	if fw.err != nil {
		if f.failed[k] != fw.err.Error() { // said once
			f.failed[k] = fw.err.Error()
			f.opts.Log.Warn(fmt.Sprintf("%s: cannot forward %s to %s (trying again every %s): %v", k.port, local, target, retryAfter, fw.err))
		}
		return man8env.ReachFailed, target
	}
	delete(f.failed, k)
	proxy := ""
	if f.opts.ProxyProtocol {
		proxy = ", PROXY protocol v2"
	}
	f.opts.Log.Info(fmt.Sprintf("%s: forwarding %s to %s (the app listens on IPv4 only%s)", k.port, local, target, proxy))
	return man8env.ReachForwarded, target
}

// Decide says how port p is reached on the IPv6 address addr given the
// app's listening sockets ls: directly when one listens on [::] or addr,
// forwarded when only an IPv4 one does (target is where to), else
// not at all.
func Decide(p man8env.Port, addr netip.Addr, ls []Listener) (reach string, target netip.AddrPort) {
	for _, l := range ls {
		if a := l.Addr.Addr(); l.Proto != p.Proto || l.Addr.Port() != p.Num || !a.Is6() || a.Is4In6() {
			continue
		}
		if a := l.Addr.Addr(); a.IsUnspecified() || a == addr {
			return man8env.ReachDirect, netip.AddrPort{}
		}
	}
	for _, l := range ls {
		// An IPv6 socket bound to ::ffff:127.0.0.1 is an IPv4 listener.
		a := l.Addr.Addr().Unmap()
		if l.Proto != p.Proto || l.Addr.Port() != p.Num || !a.Is4() {
			continue
		}
		if a.IsUnspecified() {
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		// A loopback listener beats one on a link's address: it is the
		// app's own choice for local clients.
		if !target.IsValid() || a.IsLoopback() {
			target = netip.AddrPortFrom(a, p.Num)
		}
	}
	if target.IsValid() {
		return man8env.ReachForwarded, target
	}
	return man8env.ReachNone, netip.AddrPort{}
}

// open listens on k and serves it until close is called or ctx ends.
func (f *Forwarder) open(ctx context.Context, k fwdKey, target netip.AddrPort) (func(), error) {
	lc := net.ListenConfig{Control: v6only}
	local := netip.AddrPortFrom(k.addr, k.port.Num).String()
	ctx, cancel := context.WithCancel(ctx)
	log := f.opts.Log.With("port", k.port.String())
	switch k.port.Proto {
	case man8env.TCP:
		ln, err := lc.Listen(ctx, "tcp6", local)
		if err != nil {
			cancel()
			return nil, err
		}
		p := &tcpProxy{ln: ln.(*net.TCPListener), target: target, proxy: f.opts.ProxyProtocol, slots: f.slots, pipes: f.pipes, log: log}
		done := make(chan struct{})
		go func() { defer close(done); p.serve(ctx) }()
		return func() { cancel(); ln.Close(); <-done }, nil
	case man8env.UDP:
		pc, err := lc.ListenPacket(ctx, "udp6", local)
		if err != nil {
			cancel()
			return nil, err
		}
		p := &udpProxy{conn: pc.(*net.UDPConn), target: target, proxy: f.opts.ProxyProtocol, idle: f.opts.UDPIdle, maxFlows: f.opts.MaxFlows, log: log}
		done := make(chan struct{})
		go func() { defer close(done); p.serve(ctx) }()
		return func() { cancel(); pc.Close(); <-done }, nil
	}
	cancel()
	return nil, fmt.Errorf("protocol %q: want tcp or udp", k.port.Proto)
}

// v6only sets IPV6_V6ONLY: the listener takes IPv6 only, whatever
// net.ipv6.bindv6only says (for a specific address it changes nothing,
// but says what is meant).
func v6only(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
	})
	return errors.Join(err, serr)
}

// say logs a port's reachability on the Yggdrasil address when it changes
// (the forwards themselves are logged when they open).
func (f *Forwarder) say(p man8env.Port, pr man8env.PortReach, ls []Listener) {
	if pr.Ygg == f.said[p] {
		return
	}
	f.said[p] = pr.Ygg
	switch pr.Ygg {
	case man8env.ReachDirect:
		var on []string
		for _, l := range ls {
			if l.Proto == p.Proto && l.Addr.Port() == p.Num && l.Addr.Addr().Is6() {
				on = append(on, l.Addr.String())
			}
		}
		f.opts.Log.Info(fmt.Sprintf("%s: reachable on the ygg address directly (the app listens on %s)", p, strings.Join(on, " ")))
	case man8env.ReachForwarded:
		f.opts.Log.Info(fmt.Sprintf("%s: reachable on the ygg address through the forwarder", p))
	case man8env.ReachOff:
		f.opts.Log.Info(fmt.Sprintf("%s: not reachable on the ygg address: the app listens on IPv4 only (%s) and %s=%s", p, pr.Target, man8env.KeyForwardPorts, man8env.ForwardOff))
	case man8env.ReachNone:
		if time.Since(f.started) >= reportAfter {
			f.opts.Log.Info(fmt.Sprintf("%s: not reachable: nothing listens on it", p))
		}
	}
}

// reportSilent logs the ports nothing listens on, once, after reportAfter.
func (f *Forwarder) reportSilent() {
	var none []string
	for _, p := range f.opts.Ports {
		if f.said[p] == man8env.ReachNone {
			none = append(none, p.String())
		}
	}
	if len(none) > 0 {
		f.opts.Log.Info(fmt.Sprintf("not reachable after %s: nothing listens on %s", reportAfter, strings.Join(none, ", ")))
	}
}

// publish writes st to StatePath when it changed (tmpfs: a rename is
// atomic and nothing needs syncing).
func (f *Forwarder) publish(st man8env.Reachability) {
	if f.opts.StatePath == "" {
		return
	}
	data, err := json.Marshal(st)
	if err != nil || string(data) == string(f.last) {
		return
	}
	if err := os.MkdirAll(filepath.Dir(f.opts.StatePath), 0o755); err != nil {
		f.opts.Log.Warn("publishing the reachability", "err", err)
		return
	}
	tmp := f.opts.StatePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		f.opts.Log.Warn("publishing the reachability", "err", err)
		return
	}
	if err := os.Rename(tmp, f.opts.StatePath); err != nil {
		f.opts.Log.Warn("publishing the reachability", "err", err)
		return
	}
	f.last = data
}

// overlay is Yggdrasil's address range.
var overlay = netip.MustParsePrefix("200::/7")

// LinkAddrs returns the machine's global unicast IPv6 addresses outside
// the overlay (the ULA), without ygg.
func LinkAddrs(ygg netip.Addr) ([]netip.Addr, error) {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of the links: %w", err)
	}
	var out []netip.Addr
	for _, ia := range ifaddrs {
		n, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || !a.Is6() || a.Is4In6() || !a.IsGlobalUnicast() || overlay.Contains(a) || a == ygg {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}
