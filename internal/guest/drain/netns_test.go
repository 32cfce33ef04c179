package drain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

// inNewNetns runs fn on a thread of its own in a new network namespace
// with loopback up; the thread never returns to ours (it ends with its
// goroutine), so the sockets Wait sees are the test's alone.
func inNewNetns(t *testing.T, fn func() error) {
	t.Helper()
	ci.RequireRoot(t, "network namespaces")
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			errc <- fmt.Errorf("loopback up: %w", err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// rcvBuf is the reader's receive buffer: what the writer's kernel can
// hand over before the reader reads (the kernel doubles it).
const rcvBuf = 64 << 10

// pair connects a client with a small receive buffer to a listener on
// address; it must run on the namespace's thread.
func pair(t *testing.T, network, address string) (server, client net.Conn, err error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf) })
		return errors.Join(err, serr)
	}}
	if client, err = d.Dial(network, ln.Addr().String()); err != nil {
		return nil, nil, err
	}
	if server, err = ln.Accept(); err != nil {
		client.Close()
		return nil, nil, err
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client, nil
}

// send writes n bytes to c and closes it, as an app finishing its response
// does; the socket then lingers as an orphan with what is still queued.
func send(c net.Conn, n int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, n))
		done <- errors.Join(err, c.Close())
	}()
	return done
}

// untilQueued waits until the kernel shows data queued on the socket
// bound to local.
func untilQueued(local net.Addr) error {
	want := netip.MustParseAddrPort(local.String())
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		socks, err := listTCP()
		if err != nil {
			return err
		}
		for _, c := range queued(socks) {
			if c.Local == want {
				return nil
			}
		}
	}
	return fmt.Errorf("no data queued on %s after 10s", local)
}

var loopbacks = []struct{ network, address string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}}

// Against the real kernel: a response written and closed while its reader
// is slow stays queued in an orphan socket; Wait returns only once the
// reader has taken nearly all of it (the rest sits acknowledged in the
// reader's own buffer), and the reader gets every byte and the FIN.
func TestWaitForSlowReader(t *testing.T) {
	const size = 4 << 20
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			inNewNetns(t, func() error {
				server, client, err := pair(t, lb.network, lb.address)
				if err != nil {
					return err
				}
				sent := send(server, size)
				if err := untilQueued(server.LocalAddr()); err != nil {
					return err
				}
				// The reader takes about 16 MiB/s: a quarter of a second.
				var read atomic.Int64
				readErr := make(chan error, 1)
				go func() {
					tick := time.NewTicker(2 * time.Millisecond)
					defer tick.Stop()
					buf := make([]byte, 32<<10)
					for range tick.C {
						n, err := client.Read(buf)
						read.Add(int64(n))
						if err != nil {
							readErr <- err
							return
						}
					}
				}()
				res, err := Wait(t.Context(), Options{Timeout: 20 * time.Second, Log: testLog(t)})
				atReturn := read.Load()
				if err != nil {
					return fmt.Errorf("Wait: %v", err)
				}
				if len(res.Start) == 0 || len(res.Left) != 0 {
					return fmt.Errorf("Wait saw %v first and left %v; want something, then nothing", res.Start, res.Left)
				}
				if atReturn < size-4*rcvBuf {
					return fmt.Errorf("Wait returned after %s with only %d of %d bytes read", res.Waited, atReturn, size)
				}
				if err := <-sent; err != nil {
					return fmt.Errorf("writer: %v", err)
				}
				select {
				case err := <-readErr:
					if !errors.Is(err, io.EOF) || read.Load() != size {
						return fmt.Errorf("reader ended with %v after %d of %d bytes, want EOF after all", err, read.Load(), size)
					}
				case <-time.After(10 * time.Second):
					return fmt.Errorf("reader still reading 10s after Wait returned (%d of %d bytes)", read.Load(), size)
				}
				t.Logf("Wait took %s; the reader had %d of %d bytes", res.Waited, atReturn, size)
				return nil
			})
		})
	}
}

// A reader that never reads: Wait gives up at its bound and says to whom
// the data was queued.
func TestWaitGivesUpAtTheBound(t *testing.T) {
	for _, lb := range loopbacks {
		t.Run(lb.network, func(t *testing.T) {
			inNewNetns(t, func() error {
				server, client, err := pair(t, lb.network, lb.address)
				if err != nil {
					return err
				}
				send(server, 1<<20)
				if err := untilQueued(server.LocalAddr()); err != nil {
					return err
				}
				const bound = 300 * time.Millisecond
				log := &lines{}
				start := time.Now()
				res, err := Wait(context.Background(), Options{Timeout: bound, Log: slog.New(log)})
				took := time.Since(start)
				if err != nil {
					return fmt.Errorf("Wait: %v", err)
				}
				if took < bound || took > bound+2*time.Second {
					return fmt.Errorf("Wait took %s, want its bound %s", took, bound)
				}
				peer := netip.MustParseAddrPort(client.LocalAddr().String())
				if len(res.Left) != 1 || res.Left[0].Remote != peer || res.Left[0].Queued == 0 {
					return fmt.Errorf("Left = %v, want one connection to %s with data", res.Left, peer)
				}
				got := log.all()
				want := fmt.Sprintf("gave up after 300ms, 1 TCP connection with %s still queued to %s", bytes(uint64(res.Left[0].Queued)), peer)
				if len(got) != 2 || got[1] != want {
					return fmt.Errorf("log %q, want it to end with %q", got, want)
				}
				t.Log(got)
				return nil
			})
		})
	}
}

// testLog sends Wait's lines to t.Log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
