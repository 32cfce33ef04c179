package netinit

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
)

const defaultLinkName = "host0"

// Defaults of Settings.
const (
	DefaultYggTable         = 199
	DefaultYggRulePriority  = 100
	DefaultDHCPTimeout      = 30 * time.Second
	DefaultIPv6Timeout      = 30 * time.Second
	DefaultIPv6OptionalWait = time.Second
	DefaultResolvConf       = "/etc/resolv.conf"
)

// CheckMode is MAN8S_NETWORK_CHECK: what a failed check (or setup step) does.
type CheckMode string

// Check modes.
const (
	// CheckWarn reports failures and goes on (the default).
	CheckWarn CheckMode = "warn"
	// CheckStrict makes any failure fatal.
	CheckStrict CheckMode = "strict"
	// CheckOff runs no checks; setup failures are still reported.
	CheckOff CheckMode = "off"
)

// IPv6Mode is MAN8S_IPV6.
type IPv6Mode string

// IPv6 modes.
const (
	// IPv6Required waits for SLAAC (DefaultIPv6Timeout) and fails the check
	// without it (the default).
	IPv6Required IPv6Mode = "required"
	// IPv6Optional waits briefly (DefaultIPv6OptionalWait) and accepts an
	// IPv4-only network.
	IPv6Optional IPv6Mode = "optional"
)

// Settings are the network steps' settings from the environment file.
type Settings struct {
	// Template is the machine's template (MAN8S_CONTAINER_TEMPLATE,
	// canonical; default network_isolated). host_network machines have no
	// network of their own to set up; macvlan machines get IPv4 and IPv6 on
	// the macvlan and only the Yggdrasil address on host0.
	Template string
	// Link is the link to configure; empty means host0, or the first
	// non-loopback link when there is no host0 (macvlan: the macvlan,
	// mv-UPLINK).
	Link string
	// Check is MAN8S_NETWORK_CHECK (default CheckWarn).
	Check CheckMode
	// IPv6 is MAN8S_IPV6 (default IPv6Required).
	IPv6 IPv6Mode
	// YggAddress is MAN8S_YGGDRASIL_ADDRESS; invalid (zero) when unset.
	YggAddress netip.Addr
	// YggTable and YggRulePriority place the overlay routes (defaults 199
	// and 100).
	YggTable        int
	YggRulePriority int
	// CheckDNS is a name that must resolve (MAN8S_CHECK_DNS); empty skips
	// the DNS check.
	CheckDNS string
	// DHCPTimeout bounds the first DHCPv4 lease (MAN8S_DHCP_TIMEOUT).
	DHCPTimeout time.Duration
	// IPv6Timeout bounds the wait for SLAAC and the RA's default route
	// (MAN8S_IPV6_TIMEOUT); its default depends on IPv6.
	IPv6Timeout time.Duration
	// ResolvConf is the resolver file written from the lease, relative to
	// the machine's root (MAN8S_RESOLV_CONF, default /etc/resolv.conf).
	ResolvConf string
}

// ParseSettings reads the network settings from the environment file's
// variables. Unset keys get their defaults; malformed ones are errors that
// name the key.
func ParseSettings(vars map[string]string) (Settings, error) {
	s := Settings{
		Template:        man8env.TemplateNetworkIsolated,
		Link:            strings.TrimSpace(vars[man8env.KeyLink]),
		Check:           CheckWarn,
		IPv6:            IPv6Required,
		YggTable:        DefaultYggTable,
		YggRulePriority: DefaultYggRulePriority,
		CheckDNS:        strings.TrimSpace(vars[man8env.KeyCheckDNS]),
		DHCPTimeout:     DefaultDHCPTimeout,
		ResolvConf:      DefaultResolvConf,
	}
	if v := strings.TrimSpace(vars[man8env.KeyTemplate]); v != "" {
		t, err := man8env.ParseTemplate(v)
		if err != nil {
			return s, fmt.Errorf("%s: %w", man8env.KeyTemplate, err)
		}
		s.Template = t
	}
	if v := strings.ToLower(strings.TrimSpace(vars[man8env.KeyCheck])); v != "" {
		switch m := CheckMode(v); m {
		case CheckWarn, CheckStrict, CheckOff:
			s.Check = m
		default:
			return s, fmt.Errorf("%s=%q: want warn, strict or off", man8env.KeyCheck, vars[man8env.KeyCheck])
		}
	}
	if v := strings.ToLower(strings.TrimSpace(vars[man8env.KeyIPv6])); v != "" {
		switch m := IPv6Mode(v); m {
		case IPv6Required, IPv6Optional:
			s.IPv6 = m
		default:
			return s, fmt.Errorf("%s=%q: want required or optional", man8env.KeyIPv6, vars[man8env.KeyIPv6])
		}
	}
	if v := strings.TrimSpace(vars[man8env.KeyYggAddress]); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return s, fmt.Errorf("%s=%q: want an IPv6 address", man8env.KeyYggAddress, v)
		}
		s.YggAddress = a
	}
	var err error
	if s.YggTable, err = parseUint(vars, man8env.KeyYggTable, DefaultYggTable, 1, 0xffffffff); err != nil {
		return s, err
	}
	switch s.YggTable {
	case 253, 254, 255: // default, main, local: not ours to fill
		return s, fmt.Errorf("%s=%d: a reserved table (default, main or local)", man8env.KeyYggTable, s.YggTable)
	}
	if s.YggRulePriority, err = parseUint(vars, man8env.KeyYggPriority, DefaultYggRulePriority, 1, 32765); err != nil {
		return s, err
	}
	if s.DHCPTimeout, err = envfile.Duration(vars, man8env.KeyDHCPTimeout, DefaultDHCPTimeout); err != nil {
		return s, err
	}
	def := DefaultIPv6Timeout
	if s.IPv6 == IPv6Optional {
		def = DefaultIPv6OptionalWait
	}
	if s.IPv6Timeout, err = envfile.Duration(vars, man8env.KeyIPv6Timeout, def); err != nil {
		return s, err
	}
	if v := strings.TrimSpace(vars[man8env.KeyResolvConf]); v != "" {
		if !strings.HasPrefix(v, "/") {
			return s, fmt.Errorf("%s=%q: want an absolute path", man8env.KeyResolvConf, v)
		}
		s.ResolvConf = v
	}
	return s, nil
}

// parseUint reads key as a decimal in [lo, hi]; unset yields def.
func parseUint(vars map[string]string, key string, def, lo, hi int) (int, error) {
	v := strings.TrimSpace(vars[key])
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || int(n) < lo || int(n) > hi {
		return 0, fmt.Errorf("%s=%q: want a number from %d to %d", key, v, lo, hi)
	}
	return int(n), nil
}
