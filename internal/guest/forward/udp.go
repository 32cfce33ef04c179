package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpProxy forwards the datagrams received on one socket to the app's
// IPv4 socket, each client (source address and port) in a flow of its
// own: a socket connected to the app, whose replies go back to that
// client. A flow ends after idle without traffic either way.
type udpProxy struct {
	conn     *net.UDPConn
	target   netip.AddrPort
	proxy    bool
	idle     time.Duration
	maxFlows int
	log      *slog.Logger

	mu      sync.Mutex
	flows   map[netip.AddrPort]*udpFlow
	dropped atomic.Int64
}

type udpFlow struct {
	up   *net.UDPConn
	last atomic.Int64 // unix nanoseconds of the last datagram
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// serve reads datagrams until the socket is closed, then ends the flows.
func (p *udpProxy) serve(ctx context.Context) {
	p.flows = map[netip.AddrPort]*udpFlow{}
	var wg sync.WaitGroup
	defer func() {
		p.mu.Lock()
		for _, f := range p.flows {
			f.up.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	}()
	local, _ := netip.ParseAddrPort(p.conn.LocalAddr().String())
	buf := make([]byte, maxDatagram)
	var hdr []byte
	for {
		n, client, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue // ICMP errors reported on the socket
		}
		f := p.flow(ctx, client, &wg)
		if f == nil {
			continue
		}
		msg := buf[:n]
		if p.proxy {
			hdr = append(append(hdr[:0], proxyHeader(client, local, true)...), msg...)
			msg = hdr
		}
		f.touch()
		f.up.Write(msg) // a refusal by the app is its business
	}
}

// flow returns the client's flow, making it (nil when the table is full).
func (p *udpProxy) flow(ctx context.Context, client netip.AddrPort, wg *sync.WaitGroup) *udpFlow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.flows[client]; f != nil {
		return f
	}
	if len(p.flows) >= p.maxFlows {
		if p.dropped.Add(1) == 1 {
			p.log.Warn("too many UDP clients: dropping datagrams of new ones", "listener", p.conn.LocalAddr(), "flows", len(p.flows))
		}
		return nil
	}
	up, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(p.target))
	if err != nil {
		p.log.Warn("opening a UDP flow", "target", p.target, "err", err)
		return nil
	}
	f := &udpFlow{up: up}
	f.touch()
	p.flows[client] = f
	wg.Go(func() { p.replies(client, f) })
	return f
}

// replies sends the app's datagrams on f back to client until f is idle.
func (p *udpProxy) replies(client netip.AddrPort, f *udpFlow) {
	defer func() {
		p.mu.Lock()
		if p.flows[client] == f {
			delete(p.flows, client)
		}
		p.mu.Unlock()
		f.up.Close()
	}()
	buf := make([]byte, maxDatagram)
	for {
		left := p.idle - time.Since(time.Unix(0, f.last.Load()))
		if left <= 0 {
			return
		}
		f.up.SetReadDeadline(time.Now().Add(left))
		n, err := f.up.Read(buf)
		var ne net.Error
		switch {
		case err == nil:
			f.touch()
			p.conn.WriteToUDPAddrPort(buf[:n], client)
		case errors.As(err, &ne) && ne.Timeout():
		case errors.Is(err, net.ErrClosed):
			return
		default:
			// ECONNREFUSED: nothing listened when the last datagram came;
			// the app may come back, the flow waits out its idle time.
		}
	}
}
