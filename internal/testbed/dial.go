package testbed

import (
	"context"
	"net"
)

// DialContext connects from inside the host's network namespace, so that
// in-process clients (e.g. an image push) reach the host's bridge, its
// machines and its Yggdrasil subnet. The socket is made on a thread that
// has entered the namespace; the connection keeps working from any thread.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.InNetns(func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
