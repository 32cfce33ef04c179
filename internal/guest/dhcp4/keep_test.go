package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testServer is a DHCPv4 server on the far end of a veth pair, in a
// network namespace of its own, that can be told to stop answering.
type testServer struct {
	answer   atomic.Bool
	lease    time.Duration
	mu       sync.Mutex
	requests []string // "DISCOVER", "REQUEST ciaddr=..."
}

var (
	serverIP = net.IPv4(198, 18, 5, 1)
	clientIP = net.IPv4(198, 18, 5, 10)
)

func (s *testServer) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	s.mu.Lock()
	s.requests = append(s.requests, fmt.Sprintf("%s ciaddr=%s", m.MessageType(), m.ClientIPAddr))
	s.mu.Unlock()
	if !s.answer.Load() {
		return
	}
	typ := dhcpv4.MessageTypeOffer
	if m.MessageType() == dhcpv4.MessageTypeRequest {
		typ = dhcpv4.MessageTypeAck
	}
	reply, err := dhcpv4.NewReplyFromRequest(m,
		dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(clientIP), dhcpv4.WithServerIP(serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)), dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(serverIP), dhcpv4.WithLeaseTime(uint32(s.lease/time.Second)))
	if err != nil {
		return
	}
	to := peer.(*net.UDPAddr)
	if m.ClientIPAddr.IsUnspecified() || m.IsBroadcast() {
		to = &net.UDPAddr{IP: net.IPv4bcast, Port: 68}
	}
	conn.WriteTo(reply.ToBytes(), to)
}

func (s *testServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// withClientAndServer runs fn on a thread in a new network namespace with
// host0, whose peer lies in a second namespace where srv answers. Neither
// is the test host's namespace.
func withClientAndServer(t *testing.T, srv *testServer, fn func(link netlink.Link) error) {
	t.Helper()
	ci.RequireRoot(t, "network namespaces")
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with us
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			client, err := netns.Get()
			if err != nil {
				return err
			}
			defer client.Close()
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host0"}, PeerName: "peer0"}); err != nil {
				return err
			}
			server, err := netns.New() // the thread is now in it
			if err != nil {
				return err
			}
			defer server.Close()
			if err := netns.Set(client); err != nil {
				return err
			}
			peer, err := netlink.LinkByName("peer0")
			if err == nil {
				err = netlink.LinkSetNsFd(peer, int(server))
			}
			if err != nil {
				return fmt.Errorf("moving peer0: %w", err)
			}
			// Configure the server's side and open its socket in its namespace.
			if err := netns.Set(server); err != nil {
				return err
			}
			var s *server4.Server
			err = func() error {
				lo, _ := netlink.LinkByName("lo")
				peer, err := netlink.LinkByName("peer0")
				if err != nil {
					return err
				}
				if err := netlink.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: serverIP, Mask: net.CIDRMask(24, 32)}}); err != nil {
					return err
				}
				for _, l := range []netlink.Link{lo, peer} {
					if err := netlink.LinkSetUp(l); err != nil {
						return err
					}
				}
				s, err = server4.NewServer("peer0", nil, srv.handle)
				return err
			}()
			if serr := netns.Set(client); err != nil || serr != nil {
				return errors.Join(err, serr)
			}
			go s.Serve()
			defer s.Close()
			link, err := netlink.LinkByName("host0")
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(link); err != nil {
				return err
			}
			for deadline := time.Now().Add(5 * time.Second); ; { // carrier (the test only)
				if l, err := netlink.LinkByName("host0"); err == nil && l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
					break
				}
				if time.Now().After(deadline) {
					return errors.New("host0 has no carrier")
				}
				time.Sleep(10 * time.Millisecond)
			}
			return fn(link)
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// events records what Keep did to the link.
type events struct {
	mu  sync.Mutex
	log []string
	c   chan string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
	e.c <- s
}

func keepConfig(link netlink.Link, ev *events) Config {
	return Config{
		Link: "host0", HardwareAddr: link.Attrs().HardwareAddr,
		Apply: func(_ context.Context, l *Lease) error {
			ev.add("apply " + l.Addr.String())
			return netlink.AddrReplace(link, &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.Addr().AsSlice(), Mask: net.CIDRMask(l.Addr.Bits(), 32)}})
		},
		Drop: func(_ context.Context, l *Lease) error {
			ev.add("drop " + l.Addr.String())
			return netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.Addr().AsSlice(), Mask: net.CIDRMask(l.Addr.Bits(), 32)}})
		},
	}
}

func (e *events) next(timeout time.Duration) (string, error) {
	select {
	case s := <-e.c:
		return s, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no event after %s", timeout)
	}
}

// Keep gets a lease, renews it by unicast at T1, and when the server falls
// silent lets it expire, drops it, and discovers a new one once the server
// answers again.
func TestKeepRenewsExpiresAndRediscovers(t *testing.T) {
	srv := &testServer{lease: 4 * time.Second}
	srv.answer.Store(true)
	withClientAndServer(t, srv, func(link netlink.Link) error {
		ev := &events{c: make(chan string, 16)}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Keep runs here, on the thread in the client's namespace (its
		// sockets are made there); the steps are checked beside it.
		checked := make(chan error, 1)
		go func() {
			defer cancel()
			checked <- checkSteps(srv, ev)
		}()
		Keep(ctx, keepConfig(link, ev), nil)
		return <-checked
	})
}

func checkSteps(srv *testServer, ev *events) error {
	want := netip.MustParsePrefix("198.18.5.10/24").String()
	steps := []struct {
		want    string
		timeout time.Duration
		then    func()
	}{
		{"apply " + want, 5 * time.Second, nil},                                // discovered
		{"apply " + want, 4 * time.Second, func() { srv.answer.Store(false) }}, // renewed at T1 (2 s)
		{"drop " + want, 8 * time.Second, func() { srv.answer.Store(true) }},   // expired: neither renewed nor rebound
		{"apply " + want, 10 * time.Second, nil},                               // discovered again
	}
	for i, s := range steps {
		got, err := ev.next(s.timeout)
		if err != nil || got != s.want {
			return fmt.Errorf("step %d: got %q (%v), want %q; server saw %v", i+1, got, err, s.want, srv.seen())
		}
		if s.then != nil {
			s.then()
		}
	}
	// The renewal was a REQUEST from the leased address, unicast at T1
	// and broadcast (rebinding) after T2.
	for _, w := range []string{"DISCOVER ciaddr=0.0.0.0", "REQUEST ciaddr=198.18.5.10"} {
		if !slices.Contains(srv.seen(), w) {
			return fmt.Errorf("server never saw %q: %v", w, srv.seen())
		}
	}
	return nil
}
