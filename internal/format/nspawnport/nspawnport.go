// Package nspawnport reads and writes the values of systemd-nspawn's Port=
// setting (man systemd.nspawn, [Network] Port=; systemd-nspawn --port) and
// the publish specs of mbctl's command line that stand for them.
//
// A Port= value is "[PROTOCOL:]HOSTPORT[:CONTAINERPORT]": the protocol is
// "tcp" (the default) or "udp", and a missing container port is the host
// port. nspawn has no host address in it: a published port is taken on
// every address of the host (a DNAT rule on the destination type "local"),
// so neither form here has one.
//
// A publish spec is written the way docker run --publish writes it:
// "HOSTPORT[:PORT][/tcp|udp]" ("8080:80", "5353:53/udp", "80").
package nspawnport

import (
	"cmp"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// Protocols of a Port: those of man8env's ports (an image's EXPOSE, the
// forwarder's), spelled alike.
const (
	TCP = man8env.TCP
	UDP = man8env.UDP
)

// Port is one published port: Host on the host forwarded to Container in
// the machine, for Protocol.
type Port struct {
	Protocol  string `json:"protocol"`
	Host      uint16 `json:"host_port"`
	Container uint16 `json:"port"`
}

// Value is the Port= value for p, with the protocol always spelled out
// ("tcp:8080:80").
func (p Port) Value() string {
	return p.Protocol + ":" + strconv.Itoa(int(p.Host)) + ":" + strconv.Itoa(int(p.Container))
}

// String is p as a publish spec: "8080:80/tcp".
func (p Port) String() string {
	return strconv.Itoa(int(p.Host)) + ":" + strconv.Itoa(int(p.Container)) + "/" + p.Protocol
}

// HostKey is what makes a published port unique on a host: "8080/tcp". Two
// Port= lines with the same key cannot both be published (nspawn ignores
// the second one of a machine; of two machines, the first started wins).
func (p Port) HostKey() string { return strconv.Itoa(int(p.Host)) + "/" + p.Protocol }

// Compare orders ports by host port, then protocol, then container port.
func Compare(a, b Port) int {
	return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Container, b.Container))
}

// Parse reads a Port= value as systemd-nspawn does: "tcp:8080:80",
// "udp:53", "8080:80", "80".
func Parse(value string) (Port, error) {
	s := value
	p := Port{Protocol: TCP}
	if rest, ok := strings.CutPrefix(s, "tcp:"); ok {
		s = rest
	} else if rest, ok := strings.CutPrefix(s, "udp:"); ok {
		p.Protocol, s = UDP, rest
	}
	host, cont, two := strings.Cut(s, ":")
	var err error
	if p.Host, err = parseNum(host); err != nil {
		return Port{}, fmt.Errorf("Port=%s: host port: %w", value, err)
	}
	p.Container = p.Host
	if two {
		if p.Container, err = parseNum(cont); err != nil {
			return Port{}, fmt.Errorf("Port=%s: container port: %w", value, err)
		}
	}
	return p, nil
}

// ParseSpec reads a publish spec, "HOSTPORT[:PORT][/tcp|udp]": "8080:80",
// "5353:53/udp", "80" (the same port on the host and in the machine). A
// host address ("198.18.0.1:8080:80", "[::1]:8080:80") is refused with the
// reason: nspawn's Port= has no such part.
func ParseSpec(spec string) (Port, error) {
	s, proto, hasProto := strings.Cut(spec, "/")
	p := Port{Protocol: TCP}
	if hasProto {
		switch strings.ToLower(proto) {
		case TCP:
		case UDP:
			p.Protocol = UDP
		default:
			return Port{}, fmt.Errorf("publish %q: protocol %q: want tcp or udp", spec, proto)
		}
	}
	if s == "" {
		return Port{}, fmt.Errorf("publish %q: empty: want HOSTPORT[:PORT][/tcp|udp], e.g. 8080:80", spec)
	}
	parts := strings.Split(s, ":")
	if len(parts) > 2 || strings.HasPrefix(s, "[") {
		if host, ok := hostPart(s); ok {
			return Port{}, fmt.Errorf("publish %q: a host address (%s) cannot be given: systemd-nspawn's Port= takes the port on every address of the host; want HOSTPORT[:PORT][/tcp|udp]", spec, host)
		}
		return Port{}, fmt.Errorf("publish %q: want HOSTPORT[:PORT][/tcp|udp], e.g. 8080:80", spec)
	}
	var err error
	if p.Host, err = parseNum(parts[0]); err != nil {
		if _, aerr := netip.ParseAddr(parts[0]); aerr == nil {
			return Port{}, fmt.Errorf("publish %q: a host address (%s) cannot be given: systemd-nspawn's Port= takes the port on every address of the host; want HOSTPORT[:PORT][/tcp|udp]", spec, parts[0])
		}
		return Port{}, fmt.Errorf("publish %q: host port: %w", spec, err)
	}
	p.Container = p.Host
	if len(parts) == 2 {
		if p.Container, err = parseNum(parts[1]); err != nil {
			return Port{}, fmt.Errorf("publish %q: port in the machine: %w", spec, err)
		}
	}
	return p, nil
}

// hostPart returns the address s starts with ("198.18.0.1" of
// "198.18.0.1:8080:80", "::1" of "[::1]:8080:80").
func hostPart(s string) (string, bool) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		addr, _, ok := strings.Cut(rest, "]")
		if _, err := netip.ParseAddr(addr); ok && err == nil {
			return addr, true
		}
		return "", false
	}
	i := strings.LastIndex(s, ":")
	if j := strings.LastIndex(s[:i], ":"); j >= 0 {
		if _, err := netip.ParseAddr(s[:j]); err == nil {
			return s[:j], true
		}
	}
	return "", false
}

// CheckTemplate says whether a machine of settings template tmpl can
// publish ports. nspawn's Port= needs the machine's own network namespace
// (VirtualEthernet=), which a host_network machine has not; a macvlan
// machine has its own addresses on the LAN, where clients reach it, and
// nspawn's rule would send the host's traffic to that LAN address, which
// a host cannot reach on its own macvlan.
func CheckTemplate(tmpl string) error {
	switch strings.TrimSpace(tmpl) {
	case man8env.TemplateHostNetwork:
		return fmt.Errorf("template %s shares the host's network: the machine's ports are the host's already, and systemd-nspawn refuses Port= without a private network; only machines of template %s publish ports", man8env.TemplateHostNetwork, man8env.TemplateNetworkIsolated)
	case man8env.TemplateMacvlan:
		return fmt.Errorf("template %s puts the machine on the LAN with addresses of its own: clients reach its ports there (its LAN IPv4 and IPv6, or its Yggdrasil address), and nspawn's Port= would send the host's traffic to its LAN address, which the host cannot reach over a macvlan; only machines of template %s publish ports", man8env.TemplateMacvlan, man8env.TemplateNetworkIsolated)
	}
	return nil
}

// parseNum reads a port number, 1 to 65535 (nspawn refuses 0). Port
// ranges ("8000-8010") are not taken: nspawn has none.
func parseNum(s string) (uint16, error) {
	if strings.Contains(s, "-") && s != "-" {
		return 0, fmt.Errorf("%q: a range is not supported (systemd-nspawn's Port= maps one port); publish each port", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}
