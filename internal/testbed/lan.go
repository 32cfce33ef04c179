package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

// LANOptions configure a test LAN. Zero values get defaults.
type LANOptions struct {
	// Uplink is the host's end of the LAN link, what a macvlan machine
	// names as its uplink. Default "lan0".
	Uplink string
	// IPv4 is the LAN router's address and the DHCP subnet. Default
	// 198.18.3.1/24 (not used by the hosts' bridges or NewPair's link).
	IPv4 netip.Prefix
	// StartTimeout bounds the wait for the router's networkd. Default 30s.
	StartTimeout time.Duration
}

// LAN is a test LAN beside a testbed host: a network namespace of its own
// joined to the host's by a veth link (the host's end is the host's uplink,
// Uplink, without an address), in which the real systemd-networkd is the
// LAN's router: a DHCPv4 server and IPv6 router advertisements for
// fc00::/64. That is the bridge's ULA prefix too; a macvlan machine does
// not take the bridge's advertisements (host0 has accept_ra=0), and the
// host's own end ignores the LAN's (accept_ra=0 too, besides forwarding).
type LAN struct {
	// Name is the namespace's name; NetNS its path.
	Name, NetNS string
	// Uplink is the host's end of the link; RouterLink the LAN's end.
	Uplink, RouterLink string
	// IPv4 is the router's address and subnet; IPv6 its address in the
	// advertised prefix fc00::/64.
	IPv4, IPv6 netip.Prefix
	// Dir holds the router's files; its log is Dir/networkd.log.
	Dir string

	host     *Host
	networkd *proc.Proc
}

// lanIPv6 is the LAN router's address in the prefix it advertises.
var lanIPv6 = netip.MustParsePrefix("fc00::1/64")

// NewLAN starts a test LAN beside h (see LAN). Close it before h.
func (h *Host) NewLAN(ctx context.Context, opts LANOptions) (*LAN, error) {
	if opts.Uplink == "" {
		opts.Uplink = "lan0"
	}
	if !opts.IPv4.IsValid() {
		opts.IPv4 = netip.MustParsePrefix("198.18.3.1/24")
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	name, err := newName()
	if err != nil {
		return nil, err
	}
	l := &LAN{Name: name, NetNS: filepath.Join(netnsDir, name), Uplink: opts.Uplink, RouterLink: "router0",
		IPv4: opts.IPv4, IPv6: lanIPv6, Dir: filepath.Join(h.Dir, "lan-"+opts.Uplink), host: h}
	if err := os.MkdirAll(filepath.Join(l.Dir, "network"), 0o755); err != nil {
		return nil, fmt.Errorf("creating the LAN's dir: %w", err)
	}
	// Named and recorded as a testbed's: swept if the test binary dies.
	if err := createNetns(name); err != nil {
		return nil, err
	}
	if err := recordOwner(name); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if err := l.start(ctx, opts); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// NewLANT starts a test LAN beside h for t and closes it in t.Cleanup
// (before h, which was made first), logging the router's log if t failed.
func NewLANT(t testing.TB, h *Host, opts LANOptions) *LAN {
	t.Helper()
	l, err := h.NewLAN(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting the test LAN of %s: %v", h.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("LAN %s networkd.log (tail):\n%s", l.Name, proc.Tail(filepath.Join(l.Dir, "networkd.log"), 4000))
		}
		if err := l.Close(); err != nil {
			t.Errorf("closing the test LAN %s: %v", l.Name, err)
		}
	})
	return l
}

// lanNetwork is the router's .network: DHCPv4 server and router
// advertisements on its end of the link.
const lanNetwork = `[Match]
Name=%s

[Link]
RequiredForOnline=no

[Network]
ConfigureWithoutCarrier=yes
IPv6DuplicateAddressDetection=0
Address=%s
DHCPServer=yes
IPv6SendRA=yes

[Address]
Address=%s
DuplicateAddressDetection=none

[DHCPServer]
EmitRouter=yes
EmitDNS=no
PoolOffset=10

[IPv6SendRA]
EmitDNS=no

[IPv6Prefix]
Prefix=%s
`

// start links the namespaces and runs the router.
func (l *LAN) start(ctx context.Context, opts LANOptions) error {
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := l.link(); err != nil {
		return err
	}
	network := filepath.Join(l.Dir, "network")
	conf := fmt.Sprintf(lanNetwork, l.RouterLink, l.IPv4, l.IPv6, l.IPv6.Masked())
	if err := os.WriteFile(filepath.Join(network, "50-lan.network"), []byte(conf), 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(l.Dir, "networkd.log")
	p, err := launchNetworkd(ctx, l.Command, l.Name, network, "", logPath)
	if err != nil {
		return err
	}
	l.networkd = p
	waitCtx, stop := whileRunning(ctx, p)
	defer stop(nil)
	if err := waitAddrs(waitCtx, l.Name, l.RouterLink, []netip.Addr{l.IPv4.Addr(), l.IPv6.Addr()}); err != nil {
		return fmt.Errorf("the LAN's systemd-networkd did not configure %s: %w (log: %s)", l.RouterLink, err, logPath)
	}
	return nil
}

// link adds the veth pair: Uplink in the host's namespace, up, without an
// address and ignoring router advertisements; RouterLink in the LAN's.
func (l *LAN) link() error {
	hh, err := handle(l.host.Name)
	if err != nil {
		return err
	}
	defer hh.Close()
	ns, err := netns.GetFromName(l.Name)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", l.Name, err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.Uplink}, PeerName: l.RouterLink, PeerNamespace: netlink.NsFd(int(ns))}
	if err := hh.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding veth %s between %s and %s: %w", l.Uplink, l.host.Name, l.Name, err)
	}
	// The host's end is a plain uplink: no SLAAC from the LAN's router.
	if err := l.host.InNetns(func() error {
		return os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", l.Uplink, "accept_ra"), []byte("0\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("turning off router advertisements on %s: %w", l.Uplink, err)
	}
	up, err := hh.LinkByName(l.Uplink)
	if err == nil {
		err = hh.LinkSetUp(up)
	}
	if err != nil {
		return fmt.Errorf("bringing up %s in %s: %w", l.Uplink, l.host.Name, err)
	}
	lh, err := handle(l.Name)
	if err != nil {
		return err
	}
	defer lh.Close()
	rl, err := lh.LinkByName(l.RouterLink)
	if err == nil {
		err = lh.LinkSetUp(rl)
	}
	if err != nil {
		return fmt.Errorf("bringing up %s in %s: %w", l.RouterLink, l.Name, err)
	}
	return nil
}

// Command returns cmd to run name with args inside the LAN's namespace
// (entered with nsenter, as Host.Command does).
func (l *LAN) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + l.NetNS, "--", name}, args...)...)
}

// DialContext connects from inside the LAN's namespace, as a host on the
// LAN would.
func (l *LAN) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := (&Host{NetNS: l.NetNS}).InNetns(func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Close stops the router and deletes the LAN's namespace, which takes
// the link (and the host's end, and every macvlan of it) with it. It is
// safe to call twice.
func (l *LAN) Close() error {
	var errs []error
	if l.networkd != nil {
		errs = append(errs, l.networkd.Stop(5*time.Second))
		l.networkd = nil
	}
	if l.Name != "" {
		errs = append(errs, deleteNetns(l.Name), forgetOwner(l.Name))
		l.Name = ""
	}
	return errors.Join(errs...)
}
