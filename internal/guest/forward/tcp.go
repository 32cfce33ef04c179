package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// tcpProxy forwards the connections accepted on one listener to the app's
// IPv4 listener. Each connection costs two goroutines and, while a chunk
// is in flight, a kernel pipe of the Forwarder's pool: the bytes are
// spliced and never enter the process (see splice.go).
type tcpProxy struct {
	ln     *net.TCPListener
	target netip.AddrPort
	proxy  bool
	// slots bounds the connections of every proxy of a Forwarder;
	// pipes are its pipes.
	slots chan struct{}
	pipes *pipePool
	log   *slog.Logger
}

// serve accepts until the listener is closed. A connection beyond the
// slots waits in the kernel's accept queue.
func (p *tcpProxy) serve(ctx context.Context) {
	delay := 5 * time.Millisecond
	for {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		c, err := p.ln.AcceptTCP()
		if err != nil {
			<-p.slots
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			// EMFILE and the like: wait, as net/http does.
			p.log.Warn("accepting", "listener", p.ln.Addr(), "err", err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		go func() {
			defer func() { <-p.slots }()
			p.handle(ctx, c)
		}()
	}
}

// dialTimeout bounds the connection to the app's listener, which is in the
// same machine: a SYN that long unanswered means a full accept queue.
const dialTimeout = 10 * time.Second

// handle forwards one connection both ways. The end of one direction
// (EOF) is passed on as a half-close; a reset or any error resets both.
func (p *tcpProxy) handle(ctx context.Context, c *net.TCPConn) {
	d := net.Dialer{Timeout: dialTimeout}
	uc, err := d.DialContext(ctx, "tcp4", p.target.String())
	if err != nil {
		// As if nothing listened: the client sees its connection reset.
		c.SetLinger(0)
		c.Close()
		return
	}
	up := uc.(*net.TCPConn)
	stop := context.AfterFunc(ctx, func() { abort(c, up) })
	defer stop()
	if p.proxy {
		src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		dst, _ := netip.ParseAddrPort(c.LocalAddr().String())
		if _, err := up.Write(proxyHeader(src, dst, false)); err != nil {
			abort(c, up)
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(up, c)
	}()
	p.pipe(c, up)
	<-done
	c.Close()
	up.Close()
}

// pipe copies src to dst until src's EOF, then half-closes dst. On an
// error (a reset by either end) it resets both, so that the reset reaches
// the other end.
func (p *tcpProxy) pipe(dst, src *net.TCPConn) {
	if err := p.pipes.copy(dst, src); err != nil {
		abort(dst, src)
		return
	}
	dst.CloseWrite()
}

// abort closes both connections with a reset (SO_LINGER 0).
func abort(a, b *net.TCPConn) {
	a.SetLinger(0)
	b.SetLinger(0)
	a.Close()
	b.Close()
}
