// Package drain is man8s-init's last step in supervise mode: after the
// application has exited, it waits a bounded time until the TCP sockets of
// the machine's network namespace have delivered the data queued in them.
//
// An application that stops gracefully (nginx on SIGQUIT) finishes its
// responses by handing the last bytes to the kernel and closing the socket.
// The kernel keeps the closed socket as an orphan (FIN-WAIT-1, CLOSING,
// LAST-ACK) until the peer has acknowledged the data and the FIN. When
// man8s-init exits, the machine ends and its network namespace goes with
// it, and so does whatever those orphans still hold: the client sees its
// download stop, with neither FIN nor RST. Wait asks the kernel (netlink
// sock_diag, in the namespace of the calling thread) what is still queued,
// every Interval, until nothing is or Timeout passes.
//
// man8s-init calls it in supervise mode only. In exec-pid1 mode the
// image's init is PID 1 and man8s-init has long been replaced by it: when
// the machine ends is that init's business.
package drain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults for Options.
const (
	// DefaultTimeout bounds the wait (MAN8S_DRAIN_TIMEOUT).
	DefaultTimeout = 5 * time.Second
	// DefaultInterval is the time between two looks at the sockets.
	DefaultInterval = 50 * time.Millisecond
)

// State is a TCP state as the kernel numbers it (include/net/tcp_states.h).
type State uint8

// The TCP states.
const (
	StateEstablished State = 1 + iota
	StateSynSent
	StateSynRecv
	StateFinWait1
	StateFinWait2
	StateTimeWait
	StateClose
	StateCloseWait
	StateLastAck
	StateListen
	StateClosing
)

// delivering reports whether a socket in state s still has data of ours
// to deliver when its send queue is not empty: it is connected (open, or
// closed by the peer) or closed by us with the FIN not yet acknowledged.
// A listener's queue counts connections, not bytes, and a SYN-SENT
// socket's counts its SYN; FIN-WAIT-2 and TIME-WAIT have everything
// acknowledged.
func (s State) delivering() bool {
	switch s {
	case StateEstablished, StateCloseWait, StateFinWait1, StateClosing, StateLastAck:
		return true
	}
	return false
}

// Conn is a TCP socket with data that its peer has not acknowledged.
type Conn struct {
	Local, Remote netip.AddrPort
	State         State
	// Queued is inet_diag's idiag_wqueue (write_seq - snd_una): the bytes
	// not sent yet and those sent but not acknowledged (TCP_INFO's
	// tcpi_notsent_bytes and unacked data), plus one for a FIN that is
	// not acknowledged.
	Queued uint32
}

// Options configure Wait.
type Options struct {
	// Timeout is how long Wait waits at most; zero or negative means
	// DefaultTimeout.
	Timeout time.Duration
	// Interval is the time between two looks; zero or negative means
	// DefaultInterval.
	Interval time.Duration
	// Log receives Wait's lines (what it waits for, how it ended); nil
	// discards them.
	Log *slog.Logger

	// list replaces the kernel's socket list in tests.
	list func() ([]*netlink.Socket, error)
}

// Result is what Wait saw.
type Result struct {
	// Start is what was queued at the first look.
	Start []Conn
	// Left is what was still queued at the last look: empty when
	// everything was delivered.
	Left []Conn
	// Waited is how long Wait took.
	Waited time.Duration
}

// Wait waits until no TCP socket of the calling thread's network namespace
// has data queued for its peer, or opts.Timeout passes. It logs what it
// waits for and how that ended. Giving up at the timeout is no error;
// Wait returns ctx's error when ctx ends first and an error when the
// kernel cannot list the sockets.
func Wait(ctx context.Context, opts Options) (Result, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.list == nil {
		opts.list = listTCP
	}

	start := time.Now()
	timer := time.NewTimer(opts.Timeout)
	defer timer.Stop()
	ticker := time.NewTicker(opts.Interval)
	defer ticker.Stop()
	var (
		res     Result
		looked  bool // Start is set
		expired bool
	)
	for {
		socks, err := opts.list()
		// An interrupted dump may have missed sockets: what it found
		// counts, but it cannot show that nothing is left.
		complete := !errors.Is(err, netlink.ErrDumpInterrupted)
		if err != nil && complete {
			res.Waited = time.Since(start)
			return res, err
		}
		res.Left, res.Waited = queued(socks), time.Since(start)
		if !looked && (complete || len(res.Left) > 0) {
			looked, res.Start = true, res.Left
			if len(res.Start) > 0 {
				opts.Log.Info(fmt.Sprintf("waiting for %s with %s queued (up to %s)",
					count(len(res.Start), "TCP connection"), bytes(total(res.Start)), round(opts.Timeout)))
			}
		}
		switch {
		case len(res.Left) == 0 && complete && len(res.Start) == 0:
			opts.Log.Info("no TCP data queued")
			return res, nil
		case len(res.Left) == 0 && complete:
			opts.Log.Info(fmt.Sprintf("done in %s", round(res.Waited)))
			return res, nil
		case expired:
			opts.Log.Info(fmt.Sprintf("gave up after %s, %s", round(opts.Timeout), left(res.Left)))
			return res, nil
		}
		select {
		case <-ctx.Done():
			res.Waited = time.Since(start)
			opts.Log.Info(fmt.Sprintf("interrupted after %s, %s", round(res.Waited), left(res.Left)))
			return res, ctx.Err()
		case <-timer.C:
			expired = true
		case <-ticker.C:
		}
	}
}

// queued returns the sockets of socks that still have data to deliver,
// the most queued first.
func queued(socks []*netlink.Socket) []Conn {
	var out []Conn
	for _, s := range socks {
		st := State(s.State)
		if s.WQueue == 0 || !st.delivering() {
			continue
		}
		out = append(out, Conn{
			Local:  addrPort(s.ID.Source, s.ID.SourcePort),
			Remote: addrPort(s.ID.Destination, s.ID.DestinationPort),
			State:  st,
			Queued: s.WQueue,
		})
	}
	slices.SortStableFunc(out, func(a, b Conn) int {
		if c := cmp.Compare(b.Queued, a.Queued); c != 0 {
			return c
		}
		return strings.Compare(a.Remote.String(), b.Remote.String())
	})
	return out
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// maxPeers is how many peers left names.
const maxPeers = 3

// left describes connections still queued: "1 TCP connection with 40
// KiB still queued to [fc00::2]:51234", naming the first maxPeers peers.
func left(conns []Conn) string {
	if len(conns) == 0 { // possible only after an interrupted dump
		return "the kernel's last list of sockets was interrupted"
	}
	peers := make([]string, 0, maxPeers)
	for _, c := range conns[:min(len(conns), maxPeers)] {
		peers = append(peers, c.Remote.String())
	}
	list := strings.Join(peers, ", ")
	if n := len(conns) - len(peers); n > 0 {
		list += fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("%s with %s still queued to %s", count(len(conns), "TCP connection"), bytes(total(conns)), list)
}

// bytes formats n as "512 B", "40 KiB" or "4.2 MiB".
func bytes(n uint64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%d KiB", (n+1<<9)>>10)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

func total(conns []Conn) uint64 {
	var n uint64
	for _, c := range conns {
		n += uint64(c.Queued)
	}
	return n
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// round shortens a duration for a log line: 340ms, 2.35s.
func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// listTCP lists the IPv4 and IPv6 TCP sockets of the calling thread's
// network namespace. A kernel without IPv6 has no IPv6 sockets. An
// interrupted dump returns what it found with netlink.ErrDumpInterrupted.
func listTCP() ([]*netlink.Socket, error) {
	var all []*netlink.Socket
	var interrupted error
	for _, f := range []struct {
		family uint8
		name   string
	}{{unix.AF_INET, "IPv4"}, {unix.AF_INET6, "IPv6"}} {
		socks, err := netlink.SocketDiagTCP(f.family)
		switch {
		case errors.Is(err, netlink.ErrDumpInterrupted):
			interrupted = err
		case f.family == unix.AF_INET6 && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT)):
			continue
		case err != nil:
			return nil, fmt.Errorf("listing %s TCP sockets: %w", f.name, err)
		}
		all = append(all, socks...)
	}
	return all, interrupted
}
