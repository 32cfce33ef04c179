// Package netinit is man8s-init's network setup inside a machine
// (DESIGN.md "Networking", issue 5 steps 3-5): on host0 it gets IPv4 by
// DHCP (internal/guest/dhcp4), waits for an IPv6 SLAAC address and the router
// advertisement's default route, and adds the Yggdrasil address with its
// own routing table and rule, then checks the result.
//
// A machine of the macvlan template has two links: the macvlan of the
// host's uplink (mv-UPLINK), which gets IPv4 and IPv6 from the LAN, and
// host0, a veth to the host's bridge that carries only the Yggdrasil
// address (router advertisements off, so that the bridge gives it no
// second default route). host_network machines share the host's network:
// there is nothing to set up (the caller skips Setup).
//
// The three run at once once the link has a carrier. Nothing sleeps on a
// fixed timer: waits are netlink subscriptions with deadlines. Nothing waits
// out duplicate address detection needlessly: SLAAC addresses are used while
// optimistic (RFC 4429; optimistic_dad and use_optimistic are turned on for
// the link), the Yggdrasil address is added without DAD (it is unique by
// construction), and man8s-init sends its own router solicitation at once
// instead of waiting for the kernel's, which follows the link-local
// address's DAD (1-2 s).
package netinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/dhcp4"
)

// Options locate what Setup works on; production uses the defaults.
type Options struct {
	// Root is the machine's root as man8s-init sees it (default "/"); the
	// resolver file is written below it.
	Root string
	// Log returns the logger of one step ("link", "dhcp", "ipv6", "ygg",
	// "check", "network"); nil discards.
	Log func(step string) *slog.Logger
}

// Timings are how long each part took, counted from Setup's start.
type Timings struct {
	Carrier, DHCP, SLAAC, Ygg, Total time.Duration
}

// Network is a configured link: its lease is kept by Keep.
type Network struct {
	// Link is the link of IPv4 and IPv6; YggLink that of the Yggdrasil
	// address: the same link, except on a macvlan machine (host0).
	Link, YggLink string
	Lease         *dhcp4.Lease
	Timings       Timings
	settings      Settings
	opts          Options
	link, yggLink netlink.Link
	mu            sync.Mutex
}

func (o *Options) log(step string) *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log(step)
}

// ErrNoLink is returned when the machine has no link besides loopback
// (nspawn's --private-network without a veth).
var ErrNoLink = errors.New("no network link besides loopback")

// Setup configures the machine's link as s says and runs the checks
// (unless s.Check is CheckOff). It returns the network, usable for Keep
// even when err is not nil, and the joined failures of setup and checks;
// the caller decides by s.Check whether they are fatal. With no link at
// all it returns ErrNoLink and a nil network.
func Setup(ctx context.Context, s Settings, opts Options) (*Network, error) {
	start := time.Now()
	if opts.Root == "" {
		opts.Root = "/"
	}
	link, yggLink, yggLinkErr := pickLinks(s)
	if link == nil {
		return nil, yggLinkErr
	}
	name := link.Attrs().Name
	n := &Network{Link: name, YggLink: name, settings: s, opts: opts, link: link, yggLink: link}
	logLink := opts.log("link")
	separate := yggLink != nil && yggLink.Attrs().Index != link.Attrs().Index
	if separate {
		n.YggLink = yggLink.Attrs().Name
		// Before it is up: no SLAAC and no default route from the bridge.
		if err := disableRA(n.YggLink); err != nil {
			logLink.Warn(err.Error())
		}
	}

	optimistic := enableOptimisticDAD(name)
	wait := max(s.DHCPTimeout, s.IPv6Timeout)
	link, err := upWithCarrier(ctx, link, wait)
	if err != nil {
		return n, err
	}
	n.link = link
	n.Timings.Carrier = time.Since(start)
	logLink.Info(fmt.Sprintf("%s up, carrier after %s", name, ms(n.Timings.Carrier)), "mac", link.Attrs().HardwareAddr, "optimistic_dad", optimistic)
	switch {
	case separate:
		if n.yggLink, err = upWithCarrier(ctx, yggLink, wait); err != nil {
			n.yggLink, yggLinkErr = nil, err
		} else {
			logLink.Info(fmt.Sprintf("%s up for the Yggdrasil address only (accept_ra=0, no DHCP)", n.YggLink))
		}
	case yggLinkErr == nil:
		n.yggLink = link
	default:
		n.yggLink = nil
	}

	var (
		wg                   sync.WaitGroup
		dhcpErr, v6Err, yErr error
	)
	wg.Go(func() { dhcpErr = n.setupIPv4(ctx, start) })
	wg.Go(func() { v6Err = n.setupIPv6(ctx, start, optimistic) })
	if s.YggAddress.IsValid() {
		if n.yggLink == nil {
			yErr = yggLinkErr
			n.YggLink = ""
		} else {
			wg.Go(func() { yErr = n.setupYgg(ctx, start) })
		}
	}
	wg.Wait()
	errs := []error{dhcpErr, v6Err, yErr}
	if s.Check != CheckOff {
		errs = append(errs, n.check(ctx))
	}
	n.Timings.Total = time.Since(start)
	err = errors.Join(errs...)
	state := "ready"
	if err != nil {
		state = "set up with failures"
	}
	opts.log("network").Info(fmt.Sprintf("%s after %s (dhcp %s, slaac %s, ygg %s)",
		state, ms(n.Timings.Total), ms(n.Timings.DHCP), ms(n.Timings.SLAAC), ms(n.Timings.Ygg)))
	return n, err
}

// ms formats d in milliseconds for the step lines (the benchmark reads them).
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// pickLinks returns the link of IPv4 and IPv6 and that of the Yggdrasil
// address as s.Template has them. Without the first, link is nil and err
// says why; without the second (a macvlan machine without host0), err
// says why and link is still returned.
func pickLinks(s Settings) (link, ygg netlink.Link, err error) {
	if s.Template != man8env.TemplateMacvlan {
		link, err = pickLink(s.Link)
		return link, link, err
	}
	if link, err = pickMacvlan(s.Link); err != nil {
		return nil, nil, err
	}
	ygg, err = netlink.LinkByName(defaultLinkName)
	if err != nil {
		return link, nil, fmt.Errorf("no %s for the Yggdrasil address (VirtualEthernet=yes and Bridge= in the machine's settings give it): %w", defaultLinkName, err)
	}
	return link, ygg, nil
}

// pickMacvlan returns the named link, or the first macvlan (nspawn's
// mv-UPLINK), or ErrNoLink when the machine has no link but loopback.
func pickMacvlan(name string) (netlink.Link, error) {
	if name != "" {
		return pickLink(name)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	others := false
	for _, l := range links {
		if l.Type() == "macvlan" || strings.HasPrefix(l.Attrs().Name, "mv-") {
			return l, nil
		}
		others = others || l.Attrs().Flags&net.FlagLoopback == 0
	}
	if !others {
		return nil, ErrNoLink
	}
	return nil, fmt.Errorf("template %s: no macvlan link (mv-UPLINK) in the machine: its settings need MACVLAN=UPLINK, or %s names the LAN link", man8env.TemplateMacvlan, man8env.KeyLink)
}

// disableRA makes link ignore router advertisements.
func disableRA(link string) error {
	p := filepath.Join("/proc/sys/net/ipv6/conf", link, "accept_ra")
	if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
		return fmt.Errorf("turning off router advertisements on %s: %w", link, err)
	}
	return nil
}

// pickLink returns the named link, or host0, or the first link that is
// not loopback.
func pickLink(name string) (netlink.Link, error) {
	if name != "" {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("finding link %s: %w", name, err)
		}
		return l, nil
	}
	if l, err := netlink.LinkByName(defaultLinkName); err == nil {
		return l, nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback == 0 && l.Attrs().EncapType != "loopback" {
			return l, nil
		}
	}
	return nil, ErrNoLink
}

// upWithCarrier brings link up and waits up to wait for its carrier. The
// link-state watch it opens is closed before it returns.
func upWithCarrier(ctx context.Context, link netlink.Link, wait time.Duration) (netlink.Link, error) {
	name := link.Attrs().Name
	w, err := newWatch()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bringing %s up: %w", name, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, wait, fmt.Errorf("%s has no carrier after %s", name, wait))
	defer cancel()
	return until(ctx, w, func() (netlink.Link, bool, error) {
		l, err := netlink.LinkByIndex(link.Attrs().Index)
		if err != nil {
			return nil, false, fmt.Errorf("reading %s: %w", name, err)
		}
		return l, l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, nil
	})
}

// enableOptimisticDAD turns on optimistic DAD for link (RFC 4429): SLAAC
// addresses are usable at once while DAD runs. It reports whether the
// kernel took it (CONFIG_IPV6_OPTIMISTIC_DAD).
func enableOptimisticDAD(link string) bool {
	dir := filepath.Join("/proc/sys/net/ipv6/conf", link)
	ok := true
	for _, key := range []string{"optimistic_dad", "use_optimistic"} {
		if err := os.WriteFile(filepath.Join(dir, key), []byte("1\n"), 0o644); err != nil {
			ok = false
		}
	}
	return ok
}

// setupIPv4 gets the first lease and applies it.
func (n *Network) setupIPv4(ctx context.Context, start time.Time) error {
	log := n.opts.log("dhcp")
	ctx, cancel := context.WithTimeoutCause(ctx, n.settings.DHCPTimeout, fmt.Errorf("%s=%s expired", man8env.KeyDHCPTimeout, n.settings.DHCPTimeout))
	defer cancel()
	l, err := dhcp4.Acquire(ctx, n.dhcpConfig())
	if err != nil {
		n.Timings.DHCP = time.Since(start)
		return err
	}
	if err := n.applyLease(ctx, l); err != nil {
		return err
	}
	n.Timings.DHCP = time.Since(start)
	log.Info(fmt.Sprintf("%s after %s", l, ms(n.Timings.DHCP)))
	return nil
}

func (n *Network) dhcpConfig() dhcp4.Config {
	return dhcp4.Config{
		Link:         n.Link,
		HardwareAddr: n.link.Attrs().HardwareAddr,
		Log:          n.opts.log("dhcp"),
		Apply:        n.applyLease,
		Drop:         n.dropLease,
	}
}

// Keep renews the lease for as long as ctx lives (supervise mode); it
// returns ctx's cause. Without a lease it discovers one.
func (n *Network) Keep(ctx context.Context) error {
	n.mu.Lock()
	l := n.Lease
	n.mu.Unlock()
	return dhcp4.Keep(ctx, n.dhcpConfig(), l)
}

// applyLease installs l: the address with the lease's lifetime (the kernel
// removes it if the lease is not renewed), the default route and, when the
// lease names DNS servers, the resolver file.
func (n *Network) applyLease(_ context.Context, l *dhcp4.Lease) error {
	var errs []error
	lft := 0 // forever
	if l.Length > 0 && l.T1 > 0 {
		lft = int(l.Length / time.Second)
	}
	a := &netlink.Addr{IPNet: ipNet(l.Addr), ValidLft: lft, PreferedLft: lft}
	if l.Addr.Bits() < 31 {
		a.Broadcast = broadcast(l.Addr).AsSlice()
	}
	if err := netlink.AddrReplace(n.link, a); err != nil {
		return fmt.Errorf("adding address %s to %s: %w", l.Addr, n.Link, err)
	}
	if l.Router.IsValid() {
		r := &netlink.Route{LinkIndex: n.link.Attrs().Index, Gw: l.Router.AsSlice(), Src: l.Addr.Addr().AsSlice(), Protocol: unix.RTPROT_DHCP, Family: netlink.FAMILY_V4}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("adding default route via %s on %s: %w", l.Router, n.Link, err))
		}
	}
	if content := RenderResolvConf(n.Link, l.DNS, l.Search); content != nil {
		if _, err := WriteResolvConf(n.opts.Root, n.settings.ResolvConf, content); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Lock()
	n.Lease = l
	n.mu.Unlock()
	return errors.Join(errs...)
}

// dropLease removes an expired lease's address (and with it its routes).
func (n *Network) dropLease(_ context.Context, l *dhcp4.Lease) error {
	n.mu.Lock()
	n.Lease = nil
	n.mu.Unlock()
	err := netlink.AddrDel(n.link, &netlink.Addr{IPNet: ipNet(l.Addr)})
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("removing address %s from %s: %w", l.Addr, n.Link, err)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// setupYgg adds the Yggdrasil address, routes and rule.
func (n *Network) setupYgg(ctx context.Context, start time.Time) error {
	p := PlanYgg(n.settings.YggAddress, n.settings.YggTable, n.settings.YggRulePriority)
	w, err := newWatch()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := p.applyAddr(n.yggLink); err != nil {
		return err
	}
	// Without DAD the address is usable as soon as the link is ready;
	// wait for the kernel to say so rather than assume it.
	ctx, cancel := context.WithTimeoutCause(ctx, 5*time.Second, fmt.Errorf("address %s still tentative on %s", p.Addr, n.YggLink))
	defer cancel()
	if _, err := until(ctx, w, func() (struct{}, bool, error) {
		f, ok, err := addrState(n.yggLink, p.Addr.Addr())
		return struct{}{}, ok && f&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0, err
	}); err != nil {
		return err
	}
	if err := p.applyRoutes(n.yggLink); err != nil {
		return err
	}
	n.Timings.Ygg = time.Since(start)
	on := ""
	if n.YggLink != n.Link {
		on = " on " + n.YggLink
	}
	n.opts.log("ygg").Info(fmt.Sprintf("%s%s after %s", p, on, ms(n.Timings.Ygg)))
	return nil
}

// addrState returns the flags of addr on link and whether it is there.
func addrState(link netlink.Link, addr netip.Addr) (int, bool, error) {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return 0, false, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if ap, ok := netip.AddrFromSlice(a.IP); ok && ap.Unmap() == addr {
			return a.Flags, true, nil
		}
	}
	return 0, false, nil
}

// v6State is what SLAAC and the router advertisement gave the link.
type v6State struct {
	addr   netip.Prefix
	flags  int
	router netip.Addr
}

// slaacState reads the link's global SLAAC address (not the Yggdrasil
// one, usable: DAD passed, or optimistic when the kernel uses optimistic
// addresses) and the default route of the RA.
func (n *Network) slaacState(optimistic bool) (v6State, bool, error) {
	var st v6State
	addrs, err := netlink.AddrList(n.link, netlink.FAMILY_V6)
	if err != nil {
		return st, false, fmt.Errorf("listing addresses of %s: %w", n.Link, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() || ip == n.settings.YggAddress {
			continue
		}
		if a.Flags&unix.IFA_F_DADFAILED != 0 {
			continue
		}
		if a.Flags&unix.IFA_F_TENTATIVE != 0 && !(optimistic && a.Flags&unix.IFA_F_OPTIMISTIC != 0) {
			continue
		}
		ones, _ := a.Mask.Size()
		st.addr, st.flags = netip.PrefixFrom(ip, ones), a.Flags
		break
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: n.link.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return st, false, fmt.Errorf("listing IPv6 routes of %s: %w", n.Link, err)
	}
	for _, r := range routes {
		if isDefault(r) && r.Gw != nil {
			st.router, _ = netip.AddrFromSlice(r.Gw)
			break
		}
	}
	return st, st.addr.IsValid() && st.router.IsValid(), nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// setupIPv6 solicits a router advertisement and waits for SLAAC.
func (n *Network) setupIPv6(ctx context.Context, start time.Time, optimistic bool) error {
	log := n.opts.log("ipv6")
	w, err := newWatch()
	if err != nil {
		return err
	}
	defer w.Close()
	timeout := n.settings.IPv6Timeout
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no SLAAC address and default route on %s after %s", n.Link, timeout))
	defer cancel()
	var solicited time.Duration
	st, err := until(ctx, w, func() (v6State, bool, error) {
		if solicited == 0 {
			// Possible once the link-local address is usable: at once
			// when it is optimistic.
			if err := sendRS(n.link); err == nil {
				solicited = time.Since(start)
			}
		}
		st, ok, err := n.slaacState(optimistic)
		if !ok && err == nil && n.settings.IPv6 == IPv6Optional && st.addr.IsValid() {
			// The RA that gave the address offers no default route (a
			// host without IPv6 uplink, see `mbctl host setup`): the
			// kernel takes the RA's router before its prefixes, so
			// waiting brings none.
			return st, true, nil
		}
		return st, ok, err
	})
	n.Timings.SLAAC = time.Since(start)
	if err != nil {
		if n.settings.IPv6 == IPv6Optional {
			log.Info(fmt.Sprintf("none after %s (%s=optional): %v", ms(n.Timings.SLAAC), man8env.KeyIPv6, err))
			return nil
		}
		return err
	}
	if !st.router.IsValid() {
		log.Info(fmt.Sprintf("%s (%s), no default route: the router offers none (%s=optional) after %s (router solicited after %s)", st.addr, addrFlags(st.flags), man8env.KeyIPv6, ms(n.Timings.SLAAC), ms(solicited)))
		return nil
	}
	log.Info(fmt.Sprintf("%s (%s) default via %s after %s (router solicited after %s)", st.addr, addrFlags(st.flags), st.router, ms(n.Timings.SLAAC), ms(solicited)))
	return nil
}

// sendRS sends one router solicitation (RFC 4861 6.3.7) to all routers on
// link, without a source link-layer option (RFC 4429 allows that from an
// optimistic address). It fails while the link has no usable source
// address.
func sendRS(link netlink.Link) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, link.Attrs().Index); err != nil {
		return err
	}
	// type 133, code 0, checksum (the kernel fills it in), reserved.
	msg := []byte{133, 0, 0, 0, 0, 0, 0, 0}
	to := &unix.SockaddrInet6{Addr: netip.MustParseAddr("ff02::2").As16(), ZoneId: uint32(link.Attrs().Index)}
	return unix.Sendto(fd, msg, 0, to)
}

// check runs step 5's checks and logs their result.
func (n *Network) check(ctx context.Context) error {
	log := n.opts.log("check")
	var errs, notes []string
	var all []error
	// Each result names its link when the machine has two (macvlan).
	on := func(link string) string {
		if n.YggLink == n.Link || n.YggLink == "" {
			return ""
		}
		return " on " + link
	}
	fail := func(what string, err error) {
		errs = append(errs, what)
		all = append(all, fmt.Errorf("check %s: %w", what, err))
	}
	// IPv4: an address and a default route.
	if err := checkIPv4(n.link); err != nil {
		fail("ipv4", err)
	} else {
		notes = append(notes, "ipv4 ok"+on(n.Link))
	}
	if _, ok, err := n.slaacState(true); err != nil || !ok {
		if n.settings.IPv6 == IPv6Optional && err == nil {
			notes = append(notes, "ipv6 absent"+on(n.Link)+" (optional)")
		} else {
			fail("ipv6", errors.Join(err, fmt.Errorf("no global IPv6 address with a default route on %s", n.Link)))
		}
	} else {
		notes = append(notes, "ipv6 ok"+on(n.Link))
	}
	if n.settings.YggAddress.IsValid() {
		p := PlanYgg(n.settings.YggAddress, n.settings.YggTable, n.settings.YggRulePriority)
		switch {
		case n.yggLink == nil:
			fail("ygg", fmt.Errorf("no link for address %s", p.Addr))
		default:
			if err := p.check(n.yggLink); err != nil {
				fail("ygg", err)
			} else {
				notes = append(notes, "ygg ok"+on(n.YggLink))
			}
		}
	}
	if name := n.settings.CheckDNS; name != "" {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(dctx, name)
		cancel()
		if err != nil {
			fail("dns", fmt.Errorf("resolving %s: %w", name, err))
		} else {
			notes = append(notes, fmt.Sprintf("dns ok (%s: %s)", name, strings.Join(addrs, " ")))
		}
	}
	for _, e := range all {
		log.Warn(e.Error())
	}
	if len(errs) == 0 {
		log.Info(strings.Join(notes, ", "))
	} else {
		log.Info(fmt.Sprintf("failed: %s; %s", strings.Join(errs, ", "), strings.Join(notes, ", ")))
	}
	return errors.Join(all...)
}

func checkIPv4(link netlink.Link) error {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("no IPv4 address on %s", link.Attrs().Name)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing IPv4 routes: %w", err)
	}
	for _, r := range routes {
		if isDefault(r) {
			return nil
		}
	}
	return fmt.Errorf("no IPv4 default route")
}

// Resume returns the network that Setup configured with lease l, for a
// process that only keeps the lease (the renewer of exec-pid1 mode).
func Resume(s Settings, opts Options, l *dhcp4.Lease) (*Network, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	link, _, err := pickLinks(s)
	if link == nil {
		return nil, err
	}
	return &Network{Link: link.Attrs().Name, Lease: l, settings: s, opts: opts, link: link}, nil
}
