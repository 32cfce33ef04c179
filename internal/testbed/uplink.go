package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Uplink is a testbed host's way "to the internet": a veth link wan0 with
// default routes that lead nowhere (its peer wan0peer stays down, so wan0
// has no carrier and drops what it is given; the kernel has no dummy
// links here), so that the host looks like one with an uplink to `mbctl
// host check`, `host setup` and `machines pull` while no packet leaves the
// host's namespace.
type Uplink struct {
	// IPv4 gives wan0 UplinkIPv4 and a default route via its .1.
	IPv4 bool
	// IPv6 gives wan0 the link-local fe80::2/64 and a ::/0 default route
	// via fe80::1 (no address outside link-local is needed).
	IPv6 bool
}

// UplinkLink is the uplink's link.
const UplinkLink = "wan0"

var (
	// UplinkIPv4 is the host's address on wan0; its gateway is the .1.
	UplinkIPv4        = netip.MustParsePrefix("198.18.250.2/30")
	uplinkIPv4Gateway = netip.MustParseAddr("198.18.250.1")
	uplinkIPv6        = netip.MustParsePrefix("fe80::2/64")
	// UplinkIPv6Gateway is the next hop of the IPv6 default route.
	UplinkIPv6Gateway = netip.MustParseAddr("fe80::1")
)

// AddUplink gives the host the default routes u asks for, on wan0 (made
// if missing). Adding what is there already changes nothing; a family u
// leaves out is left as it is. It may be called while the host runs, e.g.
// to give an IPv4-only host IPv6 later.
func (h *Host) AddUplink(u Uplink) error {
	nl, err := handle(h.Name)
	if err != nil {
		return err
	}
	defer nl.Close()
	link, err := nl.LinkByName(UplinkLink)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: UplinkLink}, PeerName: UplinkLink + "peer"}); err != nil {
			return fmt.Errorf("adding %s in %s: %w", UplinkLink, h.Name, err)
		}
		link, err = nl.LinkByName(UplinkLink)
	}
	if err != nil {
		return fmt.Errorf("finding %s in %s: %w", UplinkLink, h.Name, err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s in %s: %w", UplinkLink, h.Name, err)
	}
	add := func(addr netip.Prefix, gw netip.Addr, flags int) error {
		a, err := toNetlinkAddr(addr)
		if err != nil {
			return err
		}
		a.Flags = flags
		if err := nl.AddrReplace(link, a); err != nil {
			return fmt.Errorf("adding %s to %s in %s: %w", addr, UplinkLink, h.Name, err)
		}
		bits := 32
		if gw.Is6() {
			bits = 128
		}
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)},
			Gw:        gw.AsSlice(),
		}
		if err := nl.RouteReplace(r); err != nil {
			return fmt.Errorf("adding the default route via %s dev %s in %s: %w", gw, UplinkLink, h.Name, err)
		}
		return nil
	}
	if u.IPv4 {
		if err := add(UplinkIPv4, uplinkIPv4Gateway, 0); err != nil {
			return err
		}
	}
	if u.IPv6 {
		if err := add(uplinkIPv6, UplinkIPv6Gateway, unix.IFA_F_NODAD); err != nil {
			return err
		}
	}
	h.log.Debug("uplink added", "link", UplinkLink, "ipv4", u.IPv4, "ipv6", u.IPv6)
	return nil
}

// addUplinkIf is AddUplink when u asks for anything.
func (h *Host) addUplinkIf(u Uplink) error {
	if !u.IPv4 && !u.IPv6 {
		return nil
	}
	return h.AddUplink(u)
}
