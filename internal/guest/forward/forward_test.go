package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestParseSockets(t *testing.T) {
	const tcp4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   2: 982E00038917B0A413BC441D4D0C77A1:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
`
	const udp4 = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7 2 0000000000000000 0
  101: 0100007F:C000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 8 2 0000000000000000 0
`
	for _, tc := range []struct {
		name, text, proto, state string
		want                     []string
	}{
		{"tcp", tcp4, man8env.TCP, stateListen, []string{"127.0.0.1:8080", "0.0.0.0:80"}},
		{"tcp6", tcp6, man8env.TCP, stateListen, []string{"[::]:80", "[::1]:8081", "[300:2e98:a4b0:1789:1d44:bc13:a177:c4d]:22"}},
		{"udp", udp4, man8env.UDP, stateClose, []string{"0.0.0.0:53"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := parseSockets(strings.NewReader(tc.text), tc.proto, tc.state)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range ls {
				if l.Proto != tc.proto {
					t.Errorf("%v: protocol %s, want %s", l.Addr, l.Proto, tc.proto)
				}
				got = append(got, l.Addr.String())
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := parseSockets(strings.NewReader("h\n 0: 0100007F 00000000:0000 0A\n"), man8env.TCP, stateListen); err == nil {
		t.Error("a local address without a port was accepted")
	}
}

func TestDecide(t *testing.T) {
	ygg := netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d")
	l := func(proto, ap string) Listener { return Listener{Proto: proto, Addr: netip.MustParseAddrPort(ap)} }
	p8080 := man8env.Port{Num: 8080, Proto: man8env.TCP}
	for _, tc := range []struct {
		name   string
		port   man8env.Port
		ls     []Listener
		reach  string
		target string
	}{
		{"nothing", p8080, nil, man8env.ReachNone, ""},
		{"any v4", p8080, []Listener{l("tcp", "0.0.0.0:8080")}, man8env.ReachForwarded, "127.0.0.1:8080"},
		{"loopback v4", p8080, []Listener{l("tcp", "127.0.0.1:8080")}, man8env.ReachForwarded, "127.0.0.1:8080"},
		{"link v4", p8080, []Listener{l("tcp", "198.18.0.7:8080")}, man8env.ReachForwarded, "198.18.0.7:8080"},
		{"loopback beats link", p8080, []Listener{l("tcp", "198.18.0.7:8080"), l("tcp", "127.0.0.1:8080")}, man8env.ReachForwarded, "127.0.0.1:8080"},
		{"any v6", p8080, []Listener{l("tcp", "0.0.0.0:8080"), l("tcp", "[::]:8080")}, man8env.ReachDirect, ""},
		{"on the ygg address", p8080, []Listener{l("tcp", "0.0.0.0:8080"), l("tcp", "["+ygg.String()+"]:8080")}, man8env.ReachDirect, ""},
		{"v6 loopback only", p8080, []Listener{l("tcp", "0.0.0.0:8080"), l("tcp", "[::1]:8080")}, man8env.ReachForwarded, "127.0.0.1:8080"},
		{"v4-mapped", p8080, []Listener{l("tcp", "[::ffff:127.0.0.1]:8080")}, man8env.ReachForwarded, "127.0.0.1:8080"},
		{"other port", p8080, []Listener{l("tcp", "0.0.0.0:8081")}, man8env.ReachNone, ""},
		{"other protocol", p8080, []Listener{l("udp", "0.0.0.0:8080")}, man8env.ReachNone, ""},
		{"udp", man8env.Port{Num: 53, Proto: man8env.UDP}, []Listener{l("udp", "0.0.0.0:53"), l("tcp", "[::]:53")}, man8env.ReachForwarded, "127.0.0.1:53"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reach, target := Decide(tc.port, ygg, tc.ls)
			got := ""
			if target.IsValid() {
				got = target.String()
			}
			if reach != tc.reach || got != tc.target {
				t.Errorf("Decide = %q %q, want %q %q", reach, got, tc.reach, tc.target)
			}
		})
	}
}

func TestProxyHeader(t *testing.T) {
	src := netip.MustParseAddrPort("[300::1]:40000")
	dst := netip.MustParseAddrPort("[300::2]:8080")
	h := proxyHeader(src, dst, false)
	want := append(append([]byte{}, proxySig[:]...), 0x21, 0x21, 0, 36)
	want = append(want, src.Addr().AsSlice()...)
	want = append(want, dst.Addr().AsSlice()...)
	want = append(want, 0x9c, 0x40, 0x1f, 0x90)
	if !bytes.Equal(h, want) {
		t.Errorf("header\n%x, want\n%x", h, want)
	}
	if d := proxyHeader(src, dst, true); d[13] != 0x22 {
		t.Errorf("datagram family byte %#x, want 0x22", d[13])
	}
	v4 := proxyHeader(netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:2"), false)
	if v4[13] != 0x11 || len(v4) != 16+12 {
		t.Errorf("IPv4 header %x", v4)
	}
}

// testApp is an IPv4-only app on 127.0.0.1 and a forwarder that forwards
// [::1] (standing for the machine's ygg address) to it.
type testApp struct {
	port  man8env.Port
	state string
	// front is where clients connect: [::1]:port.
	front string
}

// startForwarder runs a forwarder for port on ::1 until the test ends.
func startForwarder(t *testing.T, port man8env.Port, mod func(*Options)) *testApp {
	t.Helper()
	a := &testApp{port: port, state: filepath.Join(t.TempDir(), "forward.json")}
	a.front = netip.AddrPortFrom(netip.IPv6Loopback(), port.Num).String()
	opts := Options{
		Ports:     []man8env.Port{port},
		Ygg:       netip.IPv6Loopback(),
		Addrs:     func() ([]netip.Addr, error) { return nil, nil },
		StatePath: a.state,
		Log:       slog.New(slog.NewTextHandler(tlog{t}, nil)),
		Settle:    50 * time.Millisecond,
		MaxPoll:   100 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return a
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

// listenV4 listens on 127.0.0.1 on a port that is free on ::1 too.
func listenV4(t *testing.T) *net.TCPListener {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		probe, err := net.Listen("tcp6", netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)).String())
		if err == nil {
			probe.Close()
			t.Cleanup(func() { ln.Close() })
			return ln.(*net.TCPListener)
		}
		ln.Close()
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return nil
}

func tcpPort(ln net.Listener) man8env.Port {
	return man8env.Port{Num: uint16(ln.Addr().(*net.TCPAddr).Port), Proto: man8env.TCP}
}

// waitState waits until the published reachability says reach for the ygg address.
func (a *testApp) waitState(t *testing.T, reach string) man8env.PortReach {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(a.state)
		if err == nil {
			last = string(data)
			var st man8env.Reachability
			if err := json.Unmarshal(data, &st); err != nil {
				t.Fatal(err)
			}
			if len(st.Ports) == 1 && st.Ports[0].Ygg == reach {
				return st.Ports[0]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the state never said %q for the ygg address; last: %s", reach, last)
	return man8env.PortReach{}
}

// serveOne accepts one connection and runs f on it.
func serveOne(t *testing.T, ln net.Listener, f func(c *net.TCPConn)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		f(c.(*net.TCPConn))
	}()
	return done
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// TestTCPHalfClose: data both ways, the client's half-close reaches the
// app as EOF, and the app's answer after it still reaches the client,
// then its close as EOF.
func TestTCPHalfClose(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), nil)
	if pr := a.waitState(t, man8env.ReachForwarded); pr.Target != ln.Addr().String() {
		t.Errorf("target %s, want %s", pr.Target, ln.Addr())
	}
	var peer string
	done := serveOne(t, ln, func(c *net.TCPConn) {
		peer = c.RemoteAddr().String()
		got, err := io.ReadAll(c) // until the half-close
		if err != nil {
			t.Error(err)
		}
		c.Write(append([]byte("got "), got...))
	})
	c := dial(t, a.front)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("got "), big...)) {
		t.Errorf("the answer after the half-close: %d bytes, want %d", len(got), 4+len(big))
	}
	<-done
	if !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("the app saw the client as %s, want 127.0.0.1 (no PROXY protocol)", peer)
	}
}

// TestTCPReset: the app's reset reaches the client as a reset.
func TestTCPReset(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), nil)
	a.waitState(t, man8env.ReachForwarded)
	done := serveOne(t, ln, func(c *net.TCPConn) {
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.SetLinger(0)
	})
	c := dial(t, a.front)
	c.Write([]byte("hello"))
	<-done
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the client read %v after the app's reset, want ECONNRESET", err)
	}
}

// TestTCPProxyProtocol: with PROXY protocol the app reads the client's
// real address and port first.
func TestTCPProxyProtocol(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), func(o *Options) { o.ProxyProtocol = true })
	a.waitState(t, man8env.ReachForwarded)
	var hdr []byte
	done := serveOne(t, ln, func(c *net.TCPConn) {
		hdr = make([]byte, 16+36+2)
		io.ReadFull(c, hdr)
	})
	c := dial(t, a.front)
	c.Write([]byte("hi"))
	<-done
	src := netip.MustParseAddrPort(c.LocalAddr().String())
	dst := netip.MustParseAddrPort(c.RemoteAddr().String())
	if want := append(proxyHeader(src, dst, false), "hi"...); !bytes.Equal(hdr, want) {
		t.Errorf("the app read\n%x, want\n%x", hdr, want)
	}
}

// TestLateBindAndIPv6Left: a port the app binds late is forwarded once it
// does; one it listens on over IPv6 is left alone.
func TestLateBindAndIPv6Left(t *testing.T) {
	ln := listenV4(t)
	port := tcpPort(ln)
	ln.Close()
	a := startForwarder(t, port, nil)
	a.waitState(t, man8env.ReachNone)
	time.Sleep(150 * time.Millisecond) // a few polls with nothing there
	late, err := net.Listen("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	a.waitState(t, man8env.ReachForwarded)

	v6 := listenV4(t)
	v6.Close()
	both, err := net.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), tcpPort(v6).Num).String())
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	b := startForwarder(t, tcpPort(v6), nil)
	b.waitState(t, man8env.ReachDirect)
}

// TestUDP: datagrams both ways in a client's flow, which ends when idle.
func TestUDP(t *testing.T) {
	var app *net.UDPConn
	for range 20 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: c.LocalAddr().(*net.UDPAddr).Port})
		if err == nil {
			probe.Close()
			app = c
			break
		}
		c.Close()
	}
	defer app.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := app.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			app.WriteToUDPAddrPort(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	port := man8env.Port{Num: uint16(app.LocalAddr().(*net.UDPAddr).Port), Proto: man8env.UDP}
	a := startForwarder(t, port, func(o *Options) { o.UDPIdle = 200 * time.Millisecond })
	a.waitState(t, man8env.ReachForwarded)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			c, err := net.Dial("udp6", a.front)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			msg := []byte{'a' + byte(i)}
			c.Write(msg)
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "echo "+string(msg) {
				t.Errorf("client %d: %q, %v", i, buf[:n], err)
			}
		})
	}
	wg.Wait()
}

// TestTCPClientReset: the client's reset reaches the app as a reset.
func TestTCPClientReset(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), nil)
	a.waitState(t, man8env.ReachForwarded)
	got := make(chan error, 1)
	done := serveOne(t, ln, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.Write([]byte("ok"))
		_, err := io.ReadAll(c)
		got <- err
	})
	c := dial(t, a.front)
	c.Write([]byte("hello"))
	io.ReadFull(c, make([]byte, 2))
	c.SetLinger(0)
	c.Close()
	<-done
	if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the app read %v after the client's reset, want ECONNRESET", err)
	}
}

// TestMaxConns: beyond MaxConns a connection waits until one ends.
func TestMaxConns(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), func(o *Options) { o.MaxConns = 1 })
	a.waitState(t, man8env.ReachForwarded)
	accepted := make(chan *net.TCPConn, 2)
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first := dial(t, a.front)
	first.Write([]byte("1"))
	c1 := <-accepted
	defer c1.Close()
	second := dial(t, a.front) // the kernel accepts it; the forwarder waits
	second.Write([]byte("2"))
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("a second connection reached the app with MaxConns 1")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close() // both ends close: a half-closed connection still counts
	c1.Close()
	select {
	case c2 := <-accepted:
		c2.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c2, b); err != nil || b[0] != '2' {
			t.Errorf("the second connection's data: %q, %v", b, err)
		}
		c2.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection never reached the app after the first ended")
	}
}

// TestListenFailure: an address the forwarder cannot listen on is
// reported, with the error, and not retried.
func TestListenFailure(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), func(o *Options) {
		o.Ygg = netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d") // not on this host
	})
	pr := a.waitState(t, man8env.ReachFailed)
	if !strings.Contains(pr.Error, "assign") {
		t.Errorf("the error %q does not say the address is not there", pr.Error)
	}
}

// TestUDPIdleAndProxy: a flow ends when idle; with PROXY protocol each
// datagram starts with the header.
func TestUDPIdleAndProxy(t *testing.T) {
	app, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	front, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{conn: front, target: netip.MustParseAddrPort(app.LocalAddr().String()), proxy: true,
		idle: 100 * time.Millisecond, maxFlows: 4, log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { defer close(done); p.serve(context.Background()) }()
	defer func() { front.Close(); <-done }()

	c, err := net.Dial("udp6", front.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	app.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, from, err := app.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort(c.LocalAddr().String())
	dst := netip.MustParseAddrPort(front.LocalAddr().String())
	if want := append(proxyHeader(src, dst, true), "ping"...); !bytes.Equal(buf[:n], want) {
		t.Errorf("the app got\n%x, want\n%x", buf[:n], want)
	}
	app.WriteToUDPAddrPort([]byte("pong"), from)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Errorf("the client got %q, %v", buf[:n], err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.flows)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d flows left after the idle time", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOff: with Off the forwarder reports an IPv4-only port and forwards
// nothing.
func TestOff(t *testing.T) {
	ln := listenV4(t)
	a := startForwarder(t, tcpPort(ln), func(o *Options) { o.Off = true })
	if pr := a.waitState(t, man8env.ReachOff); pr.Target != ln.Addr().String() {
		t.Errorf("target %q, want %s", pr.Target, ln.Addr())
	}
	time.Sleep(100 * time.Millisecond) // past the settle time
	if c, err := net.DialTimeout("tcp6", a.front, time.Second); err == nil {
		c.Close()
		t.Errorf("something listens on %s with the forwarder off", a.front)
	}
}
