package uplink

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/host/config"
)

// fakeRoutes is a namespace: links by index and the main table's routes.
type fakeRoutes struct {
	links  map[int]string
	routes []netlink.Route
}

func (f fakeRoutes) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	if filter.Table != unix.RT_TABLE_MAIN || mask != netlink.RT_FILTER_TABLE {
		return nil, errors.New("unexpected filter")
	}
	var out []netlink.Route
	for _, r := range f.routes {
		if r.Family == family {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f fakeRoutes) LinkByIndex(i int) (netlink.Link, error) {
	if n, ok := f.links[i]; ok {
		return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: n, Index: i}}, nil
	}
	return nil, netlink.LinkNotFoundError{}
}

func (f fakeRoutes) LinkByName(name string) (netlink.Link, error) {
	for i, n := range f.links {
		if n == name {
			return f.LinkByIndex(i)
		}
	}
	return nil, netlink.LinkNotFoundError{}
}

func route(dst string, link int, gw string) netlink.Route {
	p := netip.MustParsePrefix(dst)
	r := netlink.Route{LinkIndex: link, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Family: netlink.FAMILY_V4}
	if p.Addr().Is6() {
		r.Family = netlink.FAMILY_V6
	}
	if p.Bits() > 0 || p.Addr().Is6() {
		r.Dst = &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	if gw != "" {
		r.Gw = netip.MustParseAddr(gw).AsSlice()
	}
	return r
}

func TestProbe(t *testing.T) {
	links := map[int]string{1: "lo", 2: "eth0", 3: "srvgrp0", 4: "wg0"}
	unreachable := route("::/0", 1, "")
	unreachable.Type = unix.RTN_UNREACHABLE
	multipath := route("::/0", 0, "")
	multipath.MultiPath = []*netlink.NexthopInfo{{LinkIndex: 4, Gw: netip.MustParseAddr("fe80::9").AsSlice()}}
	tests := []struct {
		name   string
		routes []netlink.Route
		want   Uplink
	}{
		{"none", nil, Uplink{}},
		{"ipv4 only", []netlink.Route{route("198.18.9.0/24", 2, ""), route("0.0.0.0/0", 2, "198.18.9.1"), route("fc00::/64", 3, "")},
			Uplink{IPv4: &Route{Link: "eth0", Gateway: netip.MustParseAddr("198.18.9.1")}}},
		{"dual stack", []netlink.Route{route("0.0.0.0/0", 2, "198.18.9.1"), route("::/0", 2, "fe80::1")},
			Uplink{IPv4: &Route{Link: "eth0", Gateway: netip.MustParseAddr("198.18.9.1")}, IPv6: &Route{Link: "eth0", Gateway: netip.MustParseAddr("fe80::1")}}},
		{"ipv6 default onto the bridge is no uplink", []netlink.Route{route("::/0", 3, "fc00::1")}, Uplink{}},
		{"unreachable default is none", []netlink.Route{unreachable}, Uplink{}},
		{"direct route", []netlink.Route{route("::/0", 4, "")}, Uplink{IPv6: &Route{Link: "wg0"}}},
		{"multipath takes the first hop", []netlink.Route{multipath}, Uplink{IPv6: &Route{Link: "wg0", Gateway: netip.MustParseAddr("fe80::9")}}},
		{"bridge skipped, next one taken", []netlink.Route{route("::/0", 3, "fc00::1"), route("::/0", 2, "fe80::1")},
			Uplink{IPv6: &Route{Link: "eth0", Gateway: netip.MustParseAddr("fe80::1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Probe(fakeRoutes{links: links, routes: tt.routes}, "srvgrp0")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, addrEq); diff != "" {
				t.Errorf("Probe (-want +got):\n%s", diff)
			}
		})
	}
	// Without the bridge, nothing is skipped.
	got, err := Probe(fakeRoutes{links: map[int]string{2: "eth0"}, routes: []netlink.Route{route("::/0", 2, "fe80::1")}}, "srvgrp0")
	if err != nil || got.IPv6 == nil || got.IPv6.String() != "via fe80::1 dev eth0" {
		t.Errorf("without the bridge: %+v, %v", got.IPv6, err)
	}
}

func TestDecide(t *testing.T) {
	v6 := &Route{Link: "eth0", Gateway: netip.MustParseAddr("fe80::1")}
	probed := 0
	with := func(u Uplink, err error) func() (Uplink, error) {
		return func() (Uplink, error) { probed++; return u, err }
	}
	tests := []struct {
		mode      string
		probe     func() (Uplink, error)
		want      IPv6
		wantErr   bool
		wantProbe bool
	}{
		{config.IPv6UplinkAuto, with(Uplink{IPv6: v6}, nil), IPv6{Present: true, Route: v6}, false, true},
		{config.IPv6UplinkAuto, with(Uplink{}, nil), IPv6{}, false, true},
		{"", with(Uplink{}, nil), IPv6{}, false, true},
		{config.IPv6UplinkAuto, with(Uplink{}, errors.New("netlink")), IPv6{}, true, true},
		{config.IPv6UplinkYes, with(Uplink{}, nil), IPv6{Present: true, Configured: true}, false, false},
		{config.IPv6UplinkNo, with(Uplink{IPv6: v6}, nil), IPv6{Configured: true}, false, false},
	}
	for _, tt := range tests {
		probed = 0
		got, err := Decide(tt.mode, tt.probe)
		if (err != nil) != tt.wantErr || (probed > 0) != tt.wantProbe {
			t.Errorf("Decide(%q): err %v, probed %d", tt.mode, err, probed)
		}
		if diff := cmp.Diff(tt.want, got, addrEq); diff != "" {
			t.Errorf("Decide(%q) (-want +got):\n%s", tt.mode, diff)
		}
	}
}

var addrEq = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
