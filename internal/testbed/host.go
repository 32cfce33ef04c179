// Package testbed builds sandboxed Man8S hosts for end-to-end tests and the
// demo: a network namespace running the real systemd-networkd with the
// bridge from systemd-configs/ and the real yggdrasil, optionally two such
// hosts peered over a veth link, and a test LAN beside a host (lan.go: its
// own networkd as the LAN's DHCP server and router, for macvlan machines).
//
// Nothing is added to the caller's network namespace. Every process the
// testbed starts is stopped by its PID in Close, and state left behind by a
// test binary that was killed is swept by the next testbed (see sweep.go).
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/man8s/mbctl/internal/host/yggadmin"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

// Options configure one testbed host. Zero values get defaults.
type Options struct {
	// Dir holds the host's files (configs, sockets, logs). Default: a new
	// temp dir, removed by Close.
	Dir string
	// Log receives progress messages. Default: discarded.
	Log *slog.Logger
	// IPv4 is the bridge's address and the machines' DHCP subnet.
	// Default 198.18.1.1/24.
	IPv4 netip.Prefix
	// DHCPLeaseTime overrides the DHCP server's lease time (e.g. to watch
	// renewals). Default: the shipped configuration's.
	DHCPLeaseTime time.Duration
	// DHCPDNS are the DNS servers the DHCP server hands out. Default:
	// the shipped configuration's (the uplink's, none in a testbed).
	DHCPDNS []netip.Addr
	// NoRouterAdvertisements turns off the bridge's IPv6 router
	// advertisements (an IPv4-only host: no SLAAC for the machines).
	NoRouterAdvertisements bool
	// StartTimeout bounds the wait for yggdrasil and networkd. Default 30s.
	StartTimeout time.Duration
	// NoBridge starts networkd with an empty NetworkDir, so that there is no
	// bridge until a test writes its files (as `mbctl host setup` does) and
	// reloads networkd with `networkctl reload`. For that the host gets a
	// private system bus (BusAddress) that networkd and every Command use.
	NoBridge bool
	// Uplink gives the host default routes to "the internet" (see Uplink,
	// AddUplink). Default: none.
	Uplink Uplink

	// yggListen and yggPeers are set by NewPair.
	yggListen []string
	yggPeers  []string
}

// Host is one sandboxed Man8S host.
type Host struct {
	// Name is the network namespace's name; NetNS its path.
	Name  string
	NetNS string
	// Dir holds the host's files; logs are Dir/*.log.
	Dir string
	// Bridge is the machines' bridge (srvgrp0).
	Bridge string
	// IPv4 is the bridge's IPv4 address and subnet; ULA its IPv6 ULA one.
	IPv4 netip.Prefix
	ULA  netip.Prefix
	// YggAdmin is the yggdrasil admin endpoint (unix://...).
	YggAdmin string
	// Ygg is what yggdrasil reports about itself: its address and subnet.
	Ygg yggadmin.Self
	// NetworkDir is what networkd reads as /etc/systemd/network.
	NetworkDir string
	// BusAddress is the host's private system bus (DBUS_SYSTEM_BUS_ADDRESS
	// of networkd and of every Command), or "" when it has none: only
	// NoBridge hosts have one.
	BusAddress string

	log       *slog.Logger
	ownDir    bool
	networkd  *proc.Proc
	yggdrasil *proc.Proc
	bus       *proc.Proc
}

// NewHost starts a single testbed host.
func NewHost(ctx context.Context, opts Options) (*Host, error) {
	h, err := newNetnsHost(opts)
	if err != nil {
		return nil, err
	}
	if err := h.start(ctx, opts); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	return h, nil
}

// NewPair starts two testbed hosts joined by a veth link (uplink0,
// 198.18.0.1/30 on a and 198.18.0.2/30 on b) whose yggdrasils are peered over
// it. Their bridges use 198.18.1.1/24 and 198.18.2.1/24 unless set.
func NewPair(ctx context.Context, a, b Options) (*Host, *Host, error) {
	if !a.IPv4.IsValid() {
		a.IPv4 = netip.MustParsePrefix("198.18.1.1/24")
	}
	if !b.IPv4.IsValid() {
		b.IPv4 = netip.MustParsePrefix("198.18.2.1/24")
	}
	ha, err := newNetnsHost(a)
	if err != nil {
		return nil, nil, err
	}
	hb, err := newNetnsHost(b)
	if err != nil {
		return nil, nil, errors.Join(err, ha.Close())
	}
	fail := func(err error) (*Host, *Host, error) {
		return nil, nil, errors.Join(err, hb.Close(), ha.Close())
	}
	addrA, addrB := netip.MustParsePrefix("198.18.0.1/30"), netip.MustParsePrefix("198.18.0.2/30")
	if err := linkNamespaces(ha.Name, hb.Name, "uplink0", addrA, addrB); err != nil {
		return fail(err)
	}
	const port = 12345
	b.yggListen = []string{fmt.Sprintf("tcp://%s:%d", addrB.Addr(), port)}
	a.yggPeers = b.yggListen
	if err := hb.start(ctx, b); err != nil {
		return fail(err)
	}
	if err := ha.start(ctx, a); err != nil {
		return fail(err)
	}
	return ha, hb, nil
}

// newNetnsHost creates the host's namespace and directory.
func newNetnsHost(opts Options) (*Host, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the testbed needs root (network namespaces, mounts)")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := sweep(log, namePrefix); err != nil {
		log.Warn("sweeping leftovers of earlier testbeds", "err", err)
	}
	name, err := newName()
	if err != nil {
		return nil, err
	}
	h := &Host{Name: name, NetNS: filepath.Join(netnsDir, name), Dir: opts.Dir, Bridge: "srvgrp0", log: log.With("host", name)}
	if h.Dir == "" {
		if h.Dir, err = os.MkdirTemp("", name+"-"); err != nil {
			return nil, fmt.Errorf("creating testbed dir: %w", err)
		}
		h.ownDir = true
	}
	if err := createNetns(name); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	if err := recordOwner(name); err != nil {
		return nil, errors.Join(err, h.Close())
	}
	h.log.Debug("network namespace created", "dir", h.Dir)
	return h, nil
}

// newName returns a namespace name that is unique and names this process:
// mbtb-PID-RANDOM (at most 15 characters after the prefix).
func newName() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), hex.EncodeToString(b[:])), nil
}

// start runs yggdrasil, then networkd with the shipped bridge configuration
// filled in with this host's values, and waits until both are ready.
func (h *Host) start(ctx context.Context, opts Options) error {
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	h.IPv4 = opts.IPv4
	if !h.IPv4.IsValid() {
		h.IPv4 = netip.MustParsePrefix("198.18.1.1/24")
	}
	h.ULA = netip.MustParsePrefix("fc00::f:e:d:c/64")
	if err := h.addUplinkIf(opts.Uplink); err != nil {
		return err
	}
	if err := h.startYggdrasil(ctx, opts.yggListen, opts.yggPeers); err != nil {
		return err
	}
	if opts.NoBridge {
		if err := h.startBus(ctx); err != nil {
			return err
		}
	}
	if err := h.startNetworkd(ctx, opts); err != nil {
		return err
	}
	return nil
}

// Command returns cmd to run name with args inside the host's network
// namespace. It enters with nsenter --net= rather than `ip netns exec`,
// which would remount /sys and break systemd-nspawn's cgroup detection.
// When the host has a system bus, cmd.Env names it; append to cmd.Env
// rather than replacing it.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.NetNS, "--", name}, args...)...)
	if h.BusAddress != "" {
		cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+h.BusAddress)
	}
	return cmd
}

// YggGateway returns the bridge's address in the host's Yggdrasil subnet.
func (h *Host) YggGateway() netip.Addr {
	return h.Ygg.Subnet.Addr().Next()
}

// Close stops what the host started, in reverse order, deletes its
// namespace and, if it made it, its directory. It is safe to call twice.
func (h *Host) Close() error {
	var errs []error
	for _, p := range []**proc.Proc{&h.networkd, &h.bus, &h.yggdrasil} {
		if *p != nil {
			errs = append(errs, (*p).Stop(5*time.Second))
			*p = nil
		}
	}
	if h.Name != "" {
		errs = append(errs, deleteNetns(h.Name), forgetOwner(h.Name))
	}
	if h.ownDir && h.Dir != "" {
		errs = append(errs, os.RemoveAll(h.Dir))
		h.ownDir = false
	}
	return errors.Join(errs...)
}
