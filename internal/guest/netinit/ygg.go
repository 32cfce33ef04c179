package netinit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/yggaddr"
)

// YggPlan is the Yggdrasil configuration of a machine (DESIGN.md
// "Networking" step 3).
type YggPlan struct {
	// Addr is the machine's address with its /64.
	Addr netip.Prefix
	// Subnet is the host's Yggdrasil subnet; Gateway its ::1 (the bridge).
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Overlay is the Yggdrasil address space, 200::/7.
	Overlay netip.Prefix
	// Table and Priority place the routes and the rule.
	Table, Priority int
}

// PlanYgg returns the plan for addr with the given table and rule priority.
func PlanYgg(addr netip.Addr, table, priority int) YggPlan {
	subnet := netip.PrefixFrom(addr, 64).Masked()
	gw, _ := yggaddr.Gateway(subnet) // cannot fail: ParseSettings admits only plain IPv6 addresses
	return YggPlan{
		Addr:     netip.PrefixFrom(addr, 64),
		Subnet:   subnet,
		Gateway:  gw,
		Overlay:  yggaddr.Overlay(),
		Table:    table,
		Priority: priority,
	}
}

// yggAddr is the address as netlink adds it: without duplicate address
// detection and without a prefix route (the routes are in the plan's
// table). No DAD: the address is the host's subnet plus a hash of the
// machine's unique name, so no other node has it, and a tentative address
// could be neither a route's source nor bound to until DAD ended.
func (p YggPlan) yggAddr() *netlink.Addr {
	return &netlink.Addr{IPNet: ipNet(p.Addr), Flags: unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE}
}

// routes are `<subnet> dev LINK src ADDR table T` and
// `200::/7 via <subnet>::1 dev LINK src ADDR table T`, in the order they
// can be added (the gateway's route first).
func (p YggPlan) routes(link int) []netlink.Route {
	src := p.Addr.Addr().AsSlice()
	return []netlink.Route{
		{LinkIndex: link, Dst: ipNet(p.Subnet), Src: src, Table: p.Table, Family: netlink.FAMILY_V6, Protocol: unix.RTPROT_STATIC},
		{LinkIndex: link, Dst: ipNet(p.Overlay), Gw: p.Gateway.AsSlice(), Src: src, Table: p.Table, Family: netlink.FAMILY_V6, Protocol: unix.RTPROT_STATIC},
	}
}

// rule is `to 200::/7 lookup T priority P`.
func (p YggPlan) rule() *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V6
	r.Dst = ipNet(p.Overlay)
	r.Table = p.Table
	r.Priority = p.Priority
	return r
}

// String is the plan in ip(8) words, for the log.
func (p YggPlan) String() string {
	return fmt.Sprintf("%s noprefixroute nodad; table %d: %s src %s, %s via %s src %s; rule to %s lookup %d priority %d",
		p.Addr, p.Table, p.Subnet, p.Addr.Addr(), p.Overlay, p.Gateway, p.Addr.Addr(), p.Overlay, p.Table, p.Priority)
}

// applyAddr adds the address (idempotent).
func (p YggPlan) applyAddr(link netlink.Link) error {
	if err := netlink.AddrReplace(link, p.yggAddr()); err != nil {
		return fmt.Errorf("adding address %s to %s: %w", p.Addr, link.Attrs().Name, err)
	}
	return nil
}

// applyRoutes adds the routes and the rule (idempotent). The address must
// be usable (not tentative) for the routes' source to be accepted.
func (p YggPlan) applyRoutes(link netlink.Link) error {
	for _, r := range p.routes(link.Attrs().Index) {
		if err := netlink.RouteReplace(&r); err != nil {
			return fmt.Errorf("adding route %s to table %d on %s: %w", r.Dst, p.Table, link.Attrs().Name, err)
		}
	}
	ok, err := p.hasRule()
	if err != nil {
		return err
	}
	if !ok {
		if err := netlink.RuleAdd(p.rule()); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("adding rule to %s lookup %d priority %d: %w", p.Overlay, p.Table, p.Priority, err)
		}
	}
	return nil
}

// hasRule reports whether the plan's rule is installed.
func (p YggPlan) hasRule() (bool, error) {
	rules, err := netlink.RuleList(netlink.FAMILY_V6)
	if err != nil {
		return false, fmt.Errorf("listing IPv6 rules: %w", err)
	}
	for _, r := range rules {
		if r.Table == p.Table && r.Priority == p.Priority && r.Dst != nil && prefixOf(r.Dst) == p.Overlay && r.Src == nil {
			return true, nil
		}
	}
	return false, nil
}

// check verifies the address (present, not tentative, DAD not failed), the
// routes and the rule.
func (p YggPlan) check(link netlink.Link) error {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	var errs []error
	found := false
	for _, a := range addrs {
		if ap, ok := netip.AddrFromSlice(a.IP); ok && ap == p.Addr.Addr() {
			found = true
			if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
				errs = append(errs, fmt.Errorf("address %s on %s is %s", p.Addr, link.Attrs().Name, addrFlags(a.Flags)))
			}
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("address %s missing on %s", p.Addr, link.Attrs().Name))
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: p.Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing table %d: %w", p.Table, err))...)
	}
	for _, want := range p.routes(link.Attrs().Index) {
		if !hasRoute(routes, want) {
			errs = append(errs, fmt.Errorf("route %s in table %d missing", want.Dst, p.Table))
		}
	}
	if ok, err := p.hasRule(); err != nil || !ok {
		errs = append(errs, errors.Join(err, fmt.Errorf("rule to %s lookup %d priority %d missing", p.Overlay, p.Table, p.Priority)))
	}
	return errors.Join(errs...)
}

func hasRoute(routes []netlink.Route, want netlink.Route) bool {
	for _, r := range routes {
		if r.LinkIndex == want.LinkIndex && r.Dst != nil && prefixOf(r.Dst) == prefixOf(want.Dst) &&
			r.Gw.Equal(want.Gw) && r.Src.Equal(want.Src) {
			return true
		}
	}
	return false
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// addrFlags names the DAD-related flags of an address.
func addrFlags(f int) string {
	var s []string
	for _, x := range []struct {
		bit  int
		name string
	}{{unix.IFA_F_TENTATIVE, "tentative"}, {unix.IFA_F_DADFAILED, "dadfailed"}, {unix.IFA_F_OPTIMISTIC, "optimistic"}, {unix.IFA_F_NODAD, "nodad"}} {
		if f&x.bit != 0 {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return "valid"
	}
	return strings.Join(s, ",")
}
