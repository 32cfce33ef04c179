// Package uplink finds this host's way to the internet: its IPv4 and IPv6
// default routes, read through netlink in the caller's network namespace.
// `host check` reports them; `host setup` and `machines pull` adapt the
// bridge and new machines to a host without IPv6 (an IPv4-only uplink).
//
// A default route through the machines' bridge is not an uplink: it leads
// to the machines, not to the internet.
package uplink

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/host/config"
)

// Routes reads routes and links; a *netlink.Handle is one.
type Routes interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	LinkByIndex(index int) (netlink.Link, error)
	LinkByName(name string) (netlink.Link, error)
}

// Route is one default route.
type Route struct {
	// Link is the name of the link the route leaves by.
	Link string `json:"link"`
	// Gateway is the next hop; invalid for a route straight onto the link.
	Gateway netip.Addr `json:"gateway,omitzero"`
}

func (r Route) String() string {
	if r.Gateway.IsValid() {
		return fmt.Sprintf("via %s dev %s", r.Gateway, r.Link)
	}
	return "dev " + r.Link
}

// Uplink is what the host has of each family; nil means no default route.
type Uplink struct {
	IPv4 *Route `json:"ipv4"`
	IPv6 *Route `json:"ipv6"`
}

// Probe reads the default routes of the main table (0.0.0.0/0 and ::/0,
// unicast only: an "unreachable default" is none) and returns the first of
// each family that does not leave through bridge. A missing bridge is
// fine.
func Probe(r Routes, bridge string) (Uplink, error) {
	skip := -1
	if l, err := r.LinkByName(bridge); err == nil {
		skip = l.Attrs().Index
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return Uplink{}, fmt.Errorf("reading link %s: %w", bridge, err)
	}
	var u Uplink
	var errs []error
	for _, f := range []struct {
		family int
		name   string
		out    **Route
	}{{netlink.FAMILY_V4, "IPv4", &u.IPv4}, {netlink.FAMILY_V6, "IPv6", &u.IPv6}} {
		rt, err := defaultRoute(r, f.family, skip)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the %s default routes: %w", f.name, err))
			continue
		}
		*f.out = rt
	}
	return u, errors.Join(errs...)
}

func defaultRoute(r Routes, family, skipLink int) (*Route, error) {
	routes, err := r.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	for _, rt := range routes {
		if rt.Dst != nil {
			if ones, _ := rt.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if rt.Type != 0 && rt.Type != unix.RTN_UNICAST {
			continue // unreachable, blackhole, prohibit
		}
		index, gw := rt.LinkIndex, rt.Gw
		if len(rt.MultiPath) > 0 {
			index, gw = rt.MultiPath[0].LinkIndex, rt.MultiPath[0].Gw
		}
		if index == skipLink || index == 0 {
			continue
		}
		out := &Route{Link: fmt.Sprintf("#%d", index)}
		if l, err := r.LinkByIndex(index); err == nil {
			out.Link = l.Attrs().Name
		}
		if a, ok := netip.AddrFromSlice(gw); ok {
			out.Gateway = a.Unmap()
		}
		return out, nil
	}
	return nil, nil
}

// IPv6 is whether machines of this host can count on IPv6 to the
// internet, and why.
type IPv6 struct {
	// Present: the host has an IPv6 uplink.
	Present bool
	// Configured: network.ipv6_uplink decided (yes or no), not the probe.
	Configured bool
	// Route is the IPv6 default route the probe found (nil: none, or not
	// probed).
	Route *Route
}

// Decide applies network.ipv6_uplink (mode): "yes" and "no" decide, "auto"
// (or "") asks probe.
func Decide(mode string, probe func() (Uplink, error)) (IPv6, error) {
	switch mode {
	case config.IPv6UplinkYes:
		return IPv6{Present: true, Configured: true}, nil
	case config.IPv6UplinkNo:
		return IPv6{Configured: true}, nil
	}
	u, err := probe()
	if err != nil {
		return IPv6{}, err
	}
	return IPv6{Present: u.IPv6 != nil, Route: u.IPv6}, nil
}

// DecideHere is Decide with a probe of the caller's network namespace,
// whose bridge is the machines'.
func DecideHere(mode, bridge string) (IPv6, error) {
	return Decide(mode, func() (Uplink, error) {
		h, err := netlink.NewHandle()
		if err != nil {
			return Uplink{}, fmt.Errorf("opening netlink: %w", err)
		}
		defer h.Close()
		return Probe(h, bridge)
	})
}

// Why is the comment and notice for a host without IPv6 uplink.
func (v IPv6) Why() string {
	if v.Configured {
		return "network.ipv6_uplink = no"
	}
	return "no IPv6 default route"
}
