package testbed

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// DialContext connects from inside the host's network namespace, so that
// in-process clients (e.g. an image push) reach the host's bridge, its
// machines and its Yggdrasil subnet. The socket is made on a thread that
// has entered the namespace; the connection keeps working from any thread.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		c, clean, err := h.dialIn(ctx, network, addr)
		if clean {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// dialIn dials on the current, locked thread from inside the namespace;
// clean reports whether the thread is back in its own namespace.
func (h *Host) dialIn(ctx context.Context, network, addr string) (c net.Conn, clean bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return nil, true, fmt.Errorf("reading this thread's network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(h.NetNS)
	if err != nil {
		return nil, true, fmt.Errorf("opening %s: %w", h.NetNS, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, true, fmt.Errorf("entering %s: %w", h.NetNS, err)
	}
	c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
	return c, netns.Set(orig) == nil, err
}
