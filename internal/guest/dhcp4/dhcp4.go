// Package dhcp4 is man8s-init's DHCPv4 client: it gets a lease on one link
// (github.com/insomniacslk/dhcp's nclient4 speaks the protocol over a raw
// socket, so the link needs no address) and keeps it for the machine's
// life: renew with the server at T1, rebind with any server at T2,
// discover again when the lease has expired. It never touches the link
// itself: the caller applies and drops leases (see Config).
package dhcp4

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Lease is one DHCPv4 lease.
type Lease struct {
	// Addr is the leased address with the subnet's length.
	Addr netip.Prefix
	// Router is the first router the server named; invalid when none.
	Router netip.Addr
	// DNS are the name servers, Search the search domains (the domain
	// search option, else the domain name).
	DNS    []netip.Addr
	Search []string
	// Server is the server that granted or last renewed the lease.
	Server netip.Addr
	// Start is when the lease was granted or last renewed; Length its
	// length, T1 and T2 when to renew and rebind, counted from Start.
	Start          time.Time
	Length, T1, T2 time.Duration

	raw *nclient4.Lease
}

// Renew, Rebind and Expiry return the lease's T1, T2 and end as times.
// A lease without end (Length zero or infinite) has zero times.
func (l *Lease) Renew() time.Time  { return l.at(l.T1) }
func (l *Lease) Rebind() time.Time { return l.at(l.T2) }
func (l *Lease) Expiry() time.Time { return l.at(l.Length) }

func (l *Lease) at(d time.Duration) time.Time {
	if l.T1 == 0 {
		return time.Time{}
	}
	return l.Start.Add(d)
}

// String describes the lease for a log line.
func (l *Lease) String() string {
	s := fmt.Sprintf("%s router %s from %s lease %s", l.Addr, l.Router, l.Server, l.Length)
	if len(l.DNS) > 0 {
		s += fmt.Sprintf(" dns %v", l.DNS)
	}
	return s
}

// newLease reads a lease from the server's answer.
func newLease(raw *nclient4.Lease, now time.Time) (*Lease, error) {
	ack := raw.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsGlobalUnicast() {
		return nil, fmt.Errorf("server %s offered no usable address (%v)", ack.ServerIPAddr, ack.YourIPAddr)
	}
	bits := 32
	if m := ack.SubnetMask(); m != nil {
		if ones, size := m.Size(); size == 32 && ones > 0 {
			bits = ones
		}
	}
	l := &Lease{Addr: netip.PrefixFrom(ip, bits), Start: now, raw: raw}
	for _, r := range ack.Router() {
		if a, ok := netip.AddrFromSlice(r.To4()); ok && a.IsValid() && !a.IsUnspecified() {
			l.Router = a
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok && !a.IsUnspecified() {
			l.DNS = append(l.DNS, a)
		}
	}
	if s := ack.DomainSearch(); s != nil && len(s.Labels) > 0 {
		l.Search = append(l.Search, s.Labels...)
	} else if d := ack.DomainName(); d != "" {
		l.Search = []string{d}
	}
	if id := ack.ServerIdentifier(); id != nil {
		l.Server, _ = netip.AddrFromSlice(id.To4())
	}
	l.Length = ack.IPAddressLeaseTime(0)
	l.T1, l.T2 = Timers(l.Length, ack.IPAddressRenewalTime(0), ack.IPAddressRebindingTime(0))
	return l, nil
}

// Config is what the client works on.
type Config struct {
	// Link is the link's name; HardwareAddr its MAC address.
	Link         string
	HardwareAddr net.HardwareAddr
	// Log receives one line per lease event; nil discards.
	Log *slog.Logger
	// Apply installs a new or renewed lease on the link; Drop removes an
	// expired one. Keep calls them; errors are logged and retried with the
	// next event.
	Apply func(ctx context.Context, l *Lease) error
	Drop  func(ctx context.Context, l *Lease) error
}

func (c *Config) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// requested asks for the options man8s-init uses.
func requested() dhcpv4.Modifier {
	return dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList,
		dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
	)
}

// Acquire discovers a server and returns its lease, retrying until ctx
// ends: the first attempts wait only a quarter of a second for an answer,
// later ones back off up to 8 s (see discoverTimeout).
func Acquire(ctx context.Context, cfg Config) (*Lease, error) {
	var last error
	for attempt := 0; ; attempt++ {
		timeout := discoverTimeout(attempt)
		begun := time.Now()
		l, err := discover(ctx, cfg, timeout)
		if err == nil {
			return l, nil
		}
		if ctx.Err() == nil {
			// An attempt that failed at once (no socket, the link gone)
			// still takes its time: no busy loop.
			t := time.NewTimer(timeout - time.Since(begun))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return nil, fmt.Errorf("no DHCPv4 lease on %s after %d attempts: %w", cfg.Link, attempt+1, errors.Join(context.Cause(ctx), last))
		}
		last = err
		cfg.log().Debug("discover attempt failed", "link", cfg.Link, "attempt", attempt+1, "err", err)
	}
}

// discover runs one Discover-Offer-Request-Ack exchange.
func discover(ctx context.Context, cfg Config, timeout time.Duration) (*Lease, error) {
	c, err := nclient4.New(cfg.Link, nclient4.WithHWAddr(cfg.HardwareAddr), nclient4.WithTimeout(timeout), nclient4.WithRetry(1))
	if err != nil {
		return nil, fmt.Errorf("opening a DHCPv4 socket on %s: %w", cfg.Link, err)
	}
	defer c.Close()
	raw, err := c.Request(ctx, requested())
	if err != nil {
		return nil, fmt.Errorf("DHCPv4 on %s: %w", cfg.Link, err)
	}
	return newLease(raw, time.Now())
}

// renewTimeout bounds one renewal or rebinding exchange.
const renewTimeout = 2 * time.Second

// renew asks the lease's server, by unicast from the leased address, to
// extend the lease (RENEWING), or, with rebind, any server by broadcast
// (REBINDING).
func renew(ctx context.Context, cfg Config, l *Lease, rebind bool) (*Lease, error) {
	opts := []nclient4.ClientOpt{nclient4.WithHWAddr(cfg.HardwareAddr), nclient4.WithTimeout(renewTimeout), nclient4.WithRetry(1)}
	var c *nclient4.Client
	var err error
	if rebind || !l.Server.IsValid() {
		c, err = nclient4.New(cfg.Link, opts...)
	} else {
		var conn net.PacketConn
		conn, err = listenUDP(ctx, cfg.Link, l.Addr.Addr())
		if err == nil {
			opts = append(opts, nclient4.WithServerAddr(&net.UDPAddr{IP: l.Server.AsSlice(), Port: nclient4.ServerPort}))
			c, err = nclient4.NewWithConn(conn, cfg.HardwareAddr, opts...)
			if err != nil {
				conn.Close()
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening a DHCPv4 socket on %s: %w", cfg.Link, err)
	}
	defer c.Close()
	raw, err := c.Renew(ctx, l.raw, requested())
	if err != nil {
		return nil, err
	}
	return newLease(raw, time.Now())
}

// listenUDP opens the client port on addr, bound to link.
func listenUDP(ctx context.Context, link string, addr netip.Addr) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); serr == nil {
				serr = syscall.BindToDevice(int(fd), link)
			}
		})
		return errors.Join(err, serr)
	}}
	return lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(addr, nclient4.ClientPort).String())
}

// Keep keeps l (already applied) for as long as ctx lives: renew at T1,
// rebind at T2, and on expiry or a NAK drop it and discover again. It
// returns when ctx ends, with its cause.
func Keep(ctx context.Context, cfg Config, l *Lease) error {
	log := cfg.log()
	for {
		if l == nil {
			var err error
			if l, err = Acquire(ctx, cfg); err != nil {
				return context.Cause(ctx)
			}
			log.Info("lease acquired", "lease", l.String())
			if err := cfg.Apply(ctx, l); err != nil {
				log.Warn("applying the lease failed", "link", cfg.Link, "err", err)
			}
			continue
		}
		if l.T1 == 0 { // infinite lease
			<-ctx.Done()
			return context.Cause(ctx)
		}
		now := time.Now()
		var (
			wait   time.Duration
			rebind bool
		)
		switch {
		case now.Before(l.Renew()):
			wait = l.Renew().Sub(now)
		case now.Before(l.Rebind()):
		case now.Before(l.Expiry()):
			rebind = true
		default:
			log.Warn("lease expired", "addr", l.Addr)
			if err := cfg.Drop(ctx, l); err != nil {
				log.Warn("removing the expired lease failed", "link", cfg.Link, "err", err)
			}
			l = nil
			continue
		}
		if wait == 0 {
			nl, err := renew(ctx, cfg, l, rebind)
			var nak *nclient4.ErrNak
			switch {
			case err == nil:
				l = nl
				log.Info(map[bool]string{false: "lease renewed", true: "lease rebound"}[rebind], "lease", l.String(), "t1", l.T1, "t2", l.T2)
				if err := cfg.Apply(ctx, l); err != nil {
					log.Warn("applying the lease failed", "link", cfg.Link, "err", err)
				}
				continue
			case errors.As(err, &nak):
				log.Warn("server refused the lease", "addr", l.Addr, "err", err)
				if err := cfg.Drop(ctx, l); err != nil {
					log.Warn("removing the refused lease failed", "link", cfg.Link, "err", err)
				}
				l = nil
				continue
			case ctx.Err() != nil:
				return context.Cause(ctx)
			}
			deadline := l.Rebind()
			if rebind {
				deadline = l.Expiry()
			}
			wait = nextAttempt(time.Until(deadline))
			log.Info("no answer; trying again", "addr", l.Addr, "rebind", rebind, "in", wait.Round(time.Millisecond), "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// MarshalText encodes the lease for another process (the renewer that
// man8s-init leaves behind in exec-pid1 mode): the server's offer and
// answer as hex, and the lease's start in Unix nanoseconds.
func (l *Lease) MarshalText() ([]byte, error) {
	if l.raw == nil || l.raw.Offer == nil || l.raw.ACK == nil {
		return nil, errors.New("lease has no server messages")
	}
	return fmt.Appendf(nil, "%x.%x.%d", l.raw.Offer.ToBytes(), l.raw.ACK.ToBytes(), l.Start.UnixNano()), nil
}

// ParseLease decodes what MarshalText wrote.
func ParseLease(text string) (*Lease, error) {
	parts := strings.Split(text, ".")
	if len(parts) != 3 {
		return nil, errors.New("parsing lease: want OFFER.ACK.START")
	}
	var msgs [2]*dhcpv4.DHCPv4
	for i := range msgs {
		b, err := hex.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("parsing lease: %w", err)
		}
		if msgs[i], err = dhcpv4.FromBytes(b); err != nil {
			return nil, fmt.Errorf("parsing lease: %w", err)
		}
	}
	ns, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("parsing lease start: %w", err)
	}
	start := time.Unix(0, ns)
	return newLease(&nclient4.Lease{Offer: msgs[0], ACK: msgs[1], CreationTime: start}, start)
}
