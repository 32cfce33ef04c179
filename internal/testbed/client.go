package testbed

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"
)

// ClientOptions configure an outside client of a testbed host: a network
// namespace of its own, joined to the host's by a veth pair (Link on both
// ends), with no daemons. It stands for another machine of the host's LAN.
type ClientOptions struct {
	// Link names the veth pair's ends. Default "client0".
	Link string
	// HostAddrs are the host end's addresses, ClientAddrs the client's
	// (IPv4 only from 198.18.0.0/15, IPv6 only link-local or from
	// fc00::/64). Default 198.18.7.1/30 and 198.18.7.2/30.
	//
	// A client address inside the bridge's ULA prefix (fc00::/64, a
	// longer prefix on the link) is masqueraded like the machines' own
	// (networkd's IPMasquerade= on the bridge matches the source
	// fc00::/64 only): a machine sees the host, not the client.
	HostAddrs, ClientAddrs []netip.Prefix
	Log                    *slog.Logger
}

// NewClient makes an outside client of h (see ClientOptions). The result
// is a Host without bridge or daemons: Command, DialContext and Listen run
// in the client's namespace; Close deletes it (and the veth pair with it).
func NewClient(h *Host, opts ClientOptions) (*Host, error) {
	if opts.Link == "" {
		opts.Link = "client0"
	}
	if len(opts.HostAddrs) == 0 && len(opts.ClientAddrs) == 0 {
		opts.HostAddrs = []netip.Prefix{netip.MustParsePrefix("198.18.7.1/30")}
		opts.ClientAddrs = []netip.Prefix{netip.MustParsePrefix("198.18.7.2/30")}
	}
	c, err := newNetnsHost(Options{Log: opts.Log})
	if err != nil {
		return nil, err
	}
	if err := linkNamespacesAddrs(h.Name, c.Name, opts.Link, opts.HostAddrs, opts.ClientAddrs); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// NewClientT is NewClient for t, closed in t.Cleanup.
func NewClientT(t testing.TB, h *Host, opts ClientOptions) *Host {
	t.Helper()
	if opts.Log == nil {
		opts.Log = testLogger(t)
	}
	c, err := NewClient(h, opts)
	if err != nil {
		t.Fatalf("making a client of testbed host %s: %v", h.Name, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing testbed client %s: %v", c.Name, err)
		}
	})
	return c
}
