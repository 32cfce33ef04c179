package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces live (as with `ip netns`).
const netnsDir = "/run/netns"

// createNetns creates the named network namespace name with loopback up. The
// calling goroutine's thread is switched into the new namespace and back.
func createNetns(name string) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the current network namespace: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	// Whatever happened, go back; a thread that cannot go back is left
	// locked, so the runtime discards it instead of reusing it.
	if setErr := netns.Set(orig); setErr != nil {
		return errors.Join(err, fmt.Errorf("returning to the original network namespace: %w", setErr))
	}
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	defer ns.Close()

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return errors.Join(fmt.Errorf("opening netlink in %s: %w", name, err), deleteNetns(name))
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("bringing up lo in %s: %w", name, err), deleteNetns(name))
	}
	return nil
}

// deleteNetns removes the named network namespace; a missing one is fine.
func deleteNetns(name string) error {
	err := netns.DeleteNamed(name)
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EINVAL) {
		// EINVAL: not a mount point any more; remove a leftover file.
		if rmErr := os.Remove(filepath.Join(netnsDir, name)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return fmt.Errorf("removing network namespace %s: %w", name, rmErr)
		}
		return nil
	}
	return fmt.Errorf("deleting network namespace %s: %w", name, err)
}

// handle opens netlink inside the named namespace.
func handle(name string) (*netlink.Handle, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", name, err)
	}
	return h, nil
}

// linkNamespaces joins namespaces a and b with a veth pair named ifname on
// both ends, addressed with addrA and addrB.
func linkNamespaces(a, b, ifname string, addrA, addrB netip.Prefix) error {
	return linkNamespacesAddrs(a, b, ifname, []netip.Prefix{addrA}, []netip.Prefix{addrB})
}

// linkNamespacesAddrs is linkNamespaces with any number of addresses on
// each end.
func linkNamespacesAddrs(a, b, ifname string, addrsA, addrsB []netip.Prefix) error {
	ha, err := handle(a)
	if err != nil {
		return err
	}
	defer ha.Close()
	hb, err := handle(b)
	if err != nil {
		return err
	}
	defer hb.Close()
	nsB, err := netns.GetFromName(b)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", b, err)
	}
	defer nsB.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifname}, PeerName: ifname, PeerNamespace: netlink.NsFd(int(nsB))}
	if err := ha.LinkAdd(veth); err != nil {
		return fmt.Errorf("adding veth %s between %s and %s: %w", ifname, a, b, err)
	}
	for _, side := range []struct {
		h     *netlink.Handle
		ns    string
		addrs []netip.Prefix
	}{{ha, a, addrsA}, {hb, b, addrsB}} {
		link, err := side.h.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("finding %s in %s: %w", ifname, side.ns, err)
		}
		for _, pfx := range side.addrs {
			addr, err := toNetlinkAddr(pfx)
			if err != nil {
				return err
			}
			if pfx.Addr().Is6() {
				addr.Flags |= unix.IFA_F_NODAD // usable at once
			}
			if err := side.h.AddrReplace(link, addr); err != nil {
				return fmt.Errorf("adding %s to %s in %s: %w", pfx, ifname, side.ns, err)
			}
		}
		if err := side.h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bringing up %s in %s: %w", ifname, side.ns, err)
		}
	}
	return nil
}

func toNetlinkAddr(p netip.Prefix) (*netlink.Addr, error) {
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return nil, fmt.Errorf("address %s: %w", p, err)
	}
	return a, nil
}

// waitAddrs polls until link ifname in namespace ns holds every address in
// want (tentative ones count), or ctx ends.
func waitAddrs(ctx context.Context, ns, ifname string, want []netip.Addr) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	var missing []netip.Addr
	for {
		missing = missing[:0]
		have := map[netip.Addr]bool{}
		if link, err := h.LinkByName(ifname); err == nil {
			addrs, _ := h.AddrList(link, netlink.FAMILY_ALL)
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP); ok {
					have[ip.Unmap()] = true
				}
			}
		}
		for _, w := range want {
			if !have[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %v on %s in %s: %w", missing, ifname, ns, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// InNetns runs fn on a thread switched into the host's network namespace
// and then back. Sockets fn opens stay in the namespace for their whole
// life. The thread is released only when it is back in its own namespace;
// else it stays locked and the runtime ends it with the goroutine. Ending a
// thread is avoided where it can be: a daemon started with Pdeathsig from
// that thread (testbed/proc) would be killed with it.
func (h *Host) InNetns(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean, err := h.inNetns(fn)
		if clean {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// inNetns runs fn in the namespace on the current, locked thread; clean
// reports whether the thread is back in its own namespace.
func (h *Host) inNetns(fn func() error) (clean bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("reading this thread's network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(h.NetNS)
	if err != nil {
		return true, fmt.Errorf("opening %s: %w", h.NetNS, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return true, fmt.Errorf("entering %s: %w", h.NetNS, err)
	}
	err = fn()
	return netns.Set(orig) == nil, err
}

// Listen listens on address inside the host's network namespace.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := h.InNetns(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}
