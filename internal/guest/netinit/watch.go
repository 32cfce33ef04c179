package netinit

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// watch subscribes to the kernel's link, address and route events; C
// receives a token after any of them. Conditions are re-read from the
// kernel on each token (level-triggered), so coalesced events lose nothing.
// Subscribe before the first check so that no change falls between the
// check and the wait.
type watch struct {
	C    <-chan struct{}
	done chan struct{}
}

func newWatch() (*watch, error) {
	c := make(chan struct{}, 1)
	w := &watch{C: c, done: make(chan struct{})}
	poke := func() {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	links := make(chan netlink.LinkUpdate, 16)
	addrs := make(chan netlink.AddrUpdate, 16)
	routes := make(chan netlink.RouteUpdate, 16)
	if err := netlink.LinkSubscribeWithOptions(links, w.done, netlink.LinkSubscribeOptions{}); err != nil {
		close(w.done)
		return nil, fmt.Errorf("subscribing to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, w.done, netlink.AddrSubscribeOptions{}); err != nil {
		close(w.done)
		return nil, fmt.Errorf("subscribing to address events: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, w.done, netlink.RouteSubscribeOptions{}); err != nil {
		close(w.done)
		return nil, fmt.Errorf("subscribing to route events: %w", err)
	}
	go func() {
		for range links {
			poke()
		}
	}()
	go func() {
		for range addrs {
			poke()
		}
	}()
	go func() {
		for range routes {
			poke()
		}
	}()
	return w, nil
}

// Close ends the subscriptions.
func (w *watch) Close() { close(w.done) }

// until waits for cond to hold, re-checking it after every event, until ctx
// ends. It returns cond's value and the context's cause on timeout.
func until[T any](ctx context.Context, w *watch, cond func() (T, bool, error)) (T, error) {
	for {
		v, ok, err := cond()
		if err != nil || ok {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, context.Cause(ctx)
		case <-w.C:
		}
	}
}
