package drain

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lines is a slog handler that keeps each record's message.
type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, r.Message)
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// sock is a socket as the kernel's dump reports it.
func sock(state State, local, remote string, wqueue uint32) *netlink.Socket {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	s := &netlink.Socket{Family: unix.AF_INET6, State: uint8(state), WQueue: wqueue}
	if l.Addr().Is4() {
		s.Family = unix.AF_INET
	}
	s.ID.Source, s.ID.SourcePort = net.IP(l.Addr().AsSlice()), l.Port()
	s.ID.Destination, s.ID.DestinationPort = net.IP(r.Addr().AsSlice()), r.Port()
	return s
}

func TestQueued(t *testing.T) {
	const (
		srv4 = "198.18.0.10:80"
		cli4 = "198.18.0.1:40000"
		srv6 = "[fc00::10]:80"
		cli6 = "[fc00::1]:40000"
	)
	tests := []struct {
		name string
		sock *netlink.Socket
		want bool
	}{
		{"established with data", sock(StateEstablished, srv4, cli4, 4096), true},
		{"established, all acknowledged", sock(StateEstablished, srv4, cli4, 0), false},
		{"closed by the peer, data left", sock(StateCloseWait, srv6, cli6, 100), true},
		{"closed by us: orphan with data", sock(StateFinWait1, srv6, cli6, 300000), true},
		{"closed by us: only the FIN unacknowledged", sock(StateFinWait1, srv6, cli6, 1), true},
		{"closing both ways", sock(StateClosing, srv4, cli4, 1), true},
		{"last ack", sock(StateLastAck, srv4, cli4, 20), true},
		{"FIN acknowledged", sock(StateFinWait2, srv4, cli4, 0), false},
		{"time wait", sock(StateTimeWait, srv4, cli4, 0), false},
		// A listener's wqueue is its backlog, a SYN-SENT socket's its SYN.
		{"listener", sock(StateListen, "0.0.0.0:80", "0.0.0.0:0", 4096), false},
		{"connecting", sock(StateSynSent, cli4, srv4, 1), false},
		{"closed", sock(StateClose, srv4, cli4, 7), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := queued([]*netlink.Socket{tt.sock})
			if (len(got) == 1) != tt.want {
				t.Fatalf("queued = %v, want counted %v", got, tt.want)
			}
			if tt.want && got[0].Queued != tt.sock.WQueue {
				t.Errorf("Queued = %d, want %d", got[0].Queued, tt.sock.WQueue)
			}
		})
	}
}

// Addresses come out unmapped, and the most queued connection first.
func TestQueuedConns(t *testing.T) {
	mapped := sock(StateFinWait1, "[::ffff:198.18.0.10]:80", "[::ffff:198.18.0.1]:40001", 10)
	got := queued([]*netlink.Socket{
		sock(StateEstablished, "198.18.0.10:80", "198.18.0.1:40000", 10),
		sock(StateLastAck, "[fc00::10]:80", "[fc00::1]:40000", 5000),
		mapped,
		sock(StateListen, "[::]:80", "[::]:0", 128),
	})
	want := []Conn{
		{netip.MustParseAddrPort("[fc00::10]:80"), netip.MustParseAddrPort("[fc00::1]:40000"), StateLastAck, 5000},
		{netip.MustParseAddrPort("198.18.0.10:80"), netip.MustParseAddrPort("198.18.0.1:40000"), StateEstablished, 10},
		{netip.MustParseAddrPort("198.18.0.10:80"), netip.MustParseAddrPort("198.18.0.1:40001"), StateFinWait1, 10},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{
		{1, "1 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {40*1024 + 300, "40 KiB"}, {40*1024 + 600, "41 KiB"},
		{312 << 10, "312 KiB"}, {1<<20 - 1, "1024 KiB"}, {1 << 20, "1.0 MiB"}, {4404019, "4.2 MiB"},
	} {
		if got := bytes(tt.n); got != tt.want {
			t.Errorf("bytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}

	conn := func(remote string, q uint32) Conn {
		return Conn{Remote: netip.MustParseAddrPort(remote), State: StateFinWait1, Queued: q}
	}
	for _, tt := range []struct {
		conns []Conn
		want  string
	}{
		{[]Conn{conn("[fc00::1]:51234", 40<<10)}, "1 TCP connection with 40 KiB still queued to [fc00::1]:51234"},
		{[]Conn{conn("198.18.0.1:1", 1), conn("198.18.0.1:2", 1)}, "2 TCP connections with 2 B still queued to 198.18.0.1:1, 198.18.0.1:2"},
		{[]Conn{conn("198.18.0.1:1", 1<<20), conn("198.18.0.1:2", 1<<20), conn("198.18.0.1:3", 1<<20), conn("198.18.0.1:4", 1<<20), conn("198.18.0.1:5", 1<<20)},
			"5 TCP connections with 5.0 MiB still queued to 198.18.0.1:1, 198.18.0.1:2, 198.18.0.1:3 and 2 more"},
		{nil, "the kernel's last list of sockets was interrupted"},
	} {
		if got := left(tt.conns); got != tt.want {
			t.Errorf("left(%v) = %q, want %q", tt.conns, got, tt.want)
		}
	}
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{340*time.Millisecond + 400*time.Microsecond, "340ms"}, {5 * time.Second, "5s"}, {2345678 * time.Microsecond, "2.35s"},
	} {
		if got := round(tt.d).String(); got != tt.want {
			t.Errorf("round(%v) = %s, want %s", tt.d, got, tt.want)
		}
	}
}

// script replays one socket list per look, repeating the last one.
func script(looks ...func() ([]*netlink.Socket, error)) func() ([]*netlink.Socket, error) {
	var mu sync.Mutex
	n := 0
	return func() ([]*netlink.Socket, error) {
		mu.Lock()
		defer mu.Unlock()
		f := looks[min(n, len(looks)-1)]
		n++
		return f()
	}
}

func list(socks ...*netlink.Socket) func() ([]*netlink.Socket, error) {
	return func() ([]*netlink.Socket, error) { return socks, nil }
}

func TestWait(t *testing.T) {
	busy := sock(StateFinWait1, "[fc00::10]:80", "[fc00::1]:51234", 40<<10)
	other := sock(StateEstablished, "198.18.0.10:80", "198.18.0.1:40000", 272<<10)
	listener := sock(StateListen, "[::]:80", "[::]:0", 511)
	interrupted := func() ([]*netlink.Socket, error) { return nil, netlink.ErrDumpInterrupted }
	broken := errors.New("netlink broke")
	tests := []struct {
		name     string
		looks    []func() ([]*netlink.Socket, error)
		cancel   bool
		wantErr  error
		wantLog  []string
		wantLeft int
	}{
		{"nothing queued", []func() ([]*netlink.Socket, error){list(listener)}, false, nil,
			[]string{"no TCP data queued"}, 0},
		{"drained", []func() ([]*netlink.Socket, error){list(busy, other, listener), list(busy), list(listener)}, false, nil,
			[]string{"waiting for 2 TCP connections with 312 KiB queued (up to 200ms)", "done in *"}, 0},
		{"gives up", []func() ([]*netlink.Socket, error){list(busy, other), list(busy)}, false, nil,
			[]string{"waiting for 2 TCP connections with 312 KiB queued (up to 200ms)", "gave up after 200ms, 1 TCP connection with 40 KiB still queued to [fc00::1]:51234"}, 1},
		// An interrupted dump may have missed a socket: it does not end the wait.
		{"interrupted dumps", []func() ([]*netlink.Socket, error){interrupted, list(busy), interrupted, list()}, false, nil,
			[]string{"waiting for 1 TCP connection with 40 KiB queued (up to 200ms)", "done in *"}, 0},
		{"only interrupted dumps", []func() ([]*netlink.Socket, error){interrupted}, false, nil,
			[]string{"gave up after 200ms, the kernel's last list of sockets was interrupted"}, 0},
		{"cancelled", []func() ([]*netlink.Socket, error){list(busy)}, true, context.Canceled,
			[]string{"waiting for 1 TCP connection with 40 KiB queued (up to 200ms)", "interrupted after *, 1 TCP connection with 40 KiB still queued to [fc00::1]:51234"}, 1},
		{"list fails", []func() ([]*netlink.Socket, error){list(busy), func() ([]*netlink.Socket, error) { return nil, broken }}, false, broken,
			[]string{"waiting for 1 TCP connection with 40 KiB queued (up to 200ms)"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			log := &lines{}
			looks := script(tt.looks...)
			if tt.cancel {
				inner := looks
				looks = func() ([]*netlink.Socket, error) { cancel(); return inner() }
			}
			const timeout = 200 * time.Millisecond
			start := time.Now()
			res, err := Wait(ctx, Options{Timeout: timeout, Interval: 5 * time.Millisecond, Log: slog.New(log), list: looks})
			took := time.Since(start)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Wait: %v, want %v", err, tt.wantErr)
			}
			got := log.all()
			if len(got) != len(tt.wantLog) {
				t.Fatalf("log %q, want %q", got, tt.wantLog)
			}
			for i, w := range tt.wantLog {
				// "*" stands for any text (a measured duration).
				if re := "^" + strings.ReplaceAll(regexp.QuoteMeta(w), `\*`, ".*") + "$"; !regexp.MustCompile(re).MatchString(got[i]) {
					t.Errorf("log line %d = %q, want %q", i, got[i], w)
				}
			}
			if len(res.Left) != tt.wantLeft {
				t.Errorf("Left = %v, want %d connections", res.Left, tt.wantLeft)
			}
			gaveUp := strings.HasPrefix(got[len(got)-1], "gave up")
			if gaveUp && took < timeout || !gaveUp && took >= timeout {
				t.Errorf("Wait took %s (timeout %s); gave up: %v", took, timeout, gaveUp)
			}
		})
	}
}
