package netinit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/guest/dhcp4"
)

// inNewNetns runs fn on a thread of its own in a new, empty network
// namespace; the thread never returns to ours (it ends with its
// goroutine), so nothing here touches the test host's network.
func inNewNetns(t *testing.T, fn func() error) {
	t.Helper()
	ci.RequireRoot(t, "network namespaces")
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// vethHost0 creates host0 with a peer, both up, and waits for carrier.
func vethHost0() (netlink.Link, error) {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "host0"}, PeerName: "peer0"}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("adding veth: %w", err)
	}
	w, err := newWatch()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for _, name := range []string{"peer0", "host0"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return nil, fmt.Errorf("%s up: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return until(ctx, w, func() (netlink.Link, bool, error) {
		l, err := netlink.LinkByName("host0")
		return l, err == nil && l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, err
	})
}

// Applying the Yggdrasil plan is idempotent: a second run changes nothing
// and the result is exactly one rule and two routes, which check accepts.
func TestYggApplyIdempotent(t *testing.T) {
	inNewNetns(t, func() error {
		link, err := vethHost0()
		if err != nil {
			return err
		}
		p := PlanYgg(netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d"), 199, 100)
		n := &Network{Link: "host0", YggLink: "host0", link: link, yggLink: link, settings: Settings{YggAddress: p.Addr.Addr(), YggTable: 199, YggRulePriority: 100}}
		for i := range 2 {
			if err := n.setupYgg(context.Background(), time.Now()); err != nil {
				return fmt.Errorf("apply %d: %w", i+1, err)
			}
			if err := p.check(link); err != nil {
				return fmt.Errorf("check after apply %d: %w", i+1, err)
			}
		}
		rules, err := netlink.RuleList(netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		count := 0
		for _, r := range rules {
			if r.Table == 199 {
				count++
			}
		}
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: 199}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		if count != 1 || len(routes) != 2 {
			return fmt.Errorf("after two applies: %d rules for table 199 and %d routes in it, want 1 and 2", count, len(routes))
		}
		f, ok, err := addrState(link, p.Addr.Addr())
		if err != nil || !ok || f&unix.IFA_F_NODAD == 0 || f&unix.IFA_F_NOPREFIXROUTE == 0 || f&unix.IFA_F_TENTATIVE != 0 {
			return errors.Join(err, fmt.Errorf("ygg address flags %s (present %v), want nodad,noprefixroute and not tentative", addrFlags(f), ok))
		}
		// No prefix route in main: overlay traffic goes by table 199 only.
		main, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ipNet(p.Subnet)}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
		if err != nil || len(main) != 0 {
			return errors.Join(err, fmt.Errorf("main table has %v for the ygg subnet", main))
		}
		return nil
	})
}

// A lease is applied (address with the lease's lifetime, default route,
// resolv.conf) idempotently, and dropped idempotently.
func TestLeaseApplyAndDrop(t *testing.T) {
	root := t.TempDir()
	inNewNetns(t, func() error {
		link, err := vethHost0()
		if err != nil {
			return err
		}
		n := &Network{Link: "host0", link: link, settings: Settings{ResolvConf: "/etc/resolv.conf"}, opts: Options{Root: root}}
		l := &dhcp4.Lease{
			Addr: netip.MustParsePrefix("198.18.5.10/24"), Router: netip.MustParseAddr("198.18.5.1"),
			DNS: []netip.Addr{netip.MustParseAddr("198.18.5.53")}, Start: time.Now(), Length: time.Hour, T1: 30 * time.Minute, T2: 50 * time.Minute,
		}
		for i := range 2 {
			if err := n.applyLease(context.Background(), l); err != nil {
				return fmt.Errorf("apply %d: %w", i+1, err)
			}
		}
		if err := checkIPv4(link); err != nil {
			return err
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil || len(addrs) != 1 || addrs[0].ValidLft <= 0 || addrs[0].ValidLft > 3600 || addrs[0].Broadcast.String() != "198.18.5.255" {
			return errors.Join(err, fmt.Errorf("IPv4 addresses %+v, want one with the lease's lifetime and broadcast", addrs))
		}
		if b, err := os.ReadFile(filepath.Join(root, "etc/resolv.conf")); err != nil || string(b) != string(RenderResolvConf("host0", l.DNS, nil)) {
			return errors.Join(err, fmt.Errorf("resolv.conf = %q", b))
		}
		for i := range 2 {
			if err := n.dropLease(context.Background(), l); err != nil {
				return fmt.Errorf("drop %d: %w", i+1, err)
			}
		}
		if err := checkIPv4(link); err == nil {
			return errors.New("IPv4 still configured after the drop")
		}
		return nil
	})
}

// The links by template: a macvlan machine's IPv4 and IPv6 go on its
// macvlan and the Yggdrasil address on host0, whose router advertisements
// can be turned off; without a macvlan the error says what to change, and
// with only loopback there is no link at all.
func TestPickLinks(t *testing.T) {
	inNewNetns(t, func() error {
		macvlan := Settings{Template: man8env.TemplateMacvlan}
		if _, _, err := pickLinks(macvlan); !errors.Is(err, ErrNoLink) {
			return fmt.Errorf("only loopback: %v, want ErrNoLink", err)
		}
		if _, err := vethHost0(); err != nil {
			return err
		}
		if l, _, err := pickLinks(macvlan); l != nil || err == nil || !strings.Contains(err.Error(), "MACVLAN=UPLINK") {
			return fmt.Errorf("no macvlan: %v, %v; want an error naming MACVLAN=", l, err)
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lanpeer0"}); err != nil {
			return err
		}
		lan, err := netlink.LinkByName("lan0")
		if err != nil {
			return err
		}
		// Named as nspawn names it, and not: the kind decides.
		mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "lanlink", ParentIndex: lan.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
		if err := netlink.LinkAdd(mv); err != nil {
			return fmt.Errorf("adding a macvlan: %w", err)
		}
		l, y, err := pickLinks(macvlan)
		if err != nil || l.Attrs().Name != "lanlink" || y.Attrs().Name != "host0" {
			return fmt.Errorf("macvlan template: links %v and %v, %v; want lanlink and host0", l, y, err)
		}
		l, y, err = pickLinks(Settings{Template: man8env.TemplateNetworkIsolated})
		if err != nil || l.Attrs().Name != "host0" || y.Attrs().Name != "host0" {
			return fmt.Errorf("network_isolated: links %v and %v, %v; want host0 for both", l, y, err)
		}
		if err := disableRA("host0"); err != nil {
			return err
		}
		if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/host0/accept_ra"); err != nil || strings.TrimSpace(string(b)) != "0" {
			return errors.Join(err, fmt.Errorf("accept_ra of host0 = %q, want 0", b))
		}
		return nil
	})
}
