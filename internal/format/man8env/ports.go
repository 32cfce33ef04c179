package man8env

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The forwarder's keys (issue 15): man8s-init forwards the machine's
// Yggdrasil and ULA addresses to the app's IPv4 listener for each listed
// port the app listens on only over IPv4.
const (
	// KeyExposedPorts is written by mbctl at pull from the image's
	// ExposedPorts, as FormatPorts writes them ("80/tcp,53/udp").
	KeyExposedPorts = "MAN8S_EXPOSED_PORTS"
	// KeyForwardPorts adds ports to forward ("8000,9000/udp"); "off"
	// turns the forwarder off, for the exposed ports too.
	KeyForwardPorts = "MAN8S_FORWARD_PORTS"
	// KeyForwardProxyProtocol "1" makes the forwarder tell the app the
	// client's address with a PROXY protocol v2 header.
	KeyForwardProxyProtocol = "MAN8S_FORWARD_PROXY_PROTOCOL"
)

// ForwardOff is the value of MAN8S_FORWARD_PORTS that turns the forwarder off.
const ForwardOff = "off"

// Protocols of a Port.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Port is a port number and its protocol, "8080/tcp".
type Port struct {
	Num   uint16
	Proto string // TCP or UDP
}

func (p Port) String() string { return strconv.Itoa(int(p.Num)) + "/" + p.Proto }

// ComparePorts orders ports by number, then protocol.
func ComparePorts(a, b Port) int {
	return cmp.Or(cmp.Compare(a.Num, b.Num), cmp.Compare(a.Proto, b.Proto))
}

// ParsePort reads "8080", "8080/tcp" or "53/udp" (the protocol defaults
// to tcp, as in an image's ExposedPorts).
func ParsePort(s string) (Port, error) {
	num, proto, found := strings.Cut(strings.TrimSpace(s), "/")
	proto = strings.ToLower(strings.TrimSpace(proto))
	if !found {
		proto = TCP
	}
	if proto != TCP && proto != UDP {
		return Port{}, fmt.Errorf("port %q: protocol %q: want tcp or udp", s, proto)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 16)
	if err != nil || n == 0 {
		return Port{}, fmt.Errorf("port %q: want a number from 1 to 65535, then /tcp or /udp", s)
	}
	return Port{Num: uint16(n), Proto: proto}, nil
}

// ParsePorts reads a comma-separated list of ports (ParsePort); empty
// gives none. The result is sorted, without duplicates.
func ParsePorts(s string) ([]Port, error) {
	var out []Port
	for f := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		p, err := ParsePort(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortFunc(out, ComparePorts)
	return slices.Compact(out), nil
}

// FormatPorts writes ports as ParsePorts reads them, sorted.
func FormatPorts(ports []Port) string {
	ps := slices.SortedFunc(slices.Values(ports), ComparePorts)
	ps = slices.Compact(ps)
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// ForwardPath is where man8s-init publishes the reachability of the
// exposed ports on the machine's Yggdrasil address (a Reachability as
// JSON, replaced atomically), beside HealthPath.
const ForwardPath = "/run/man8s/forward.json"

// How a port is reached on one of the machine's IPv6 addresses.
const (
	// ReachDirect: the app listens there itself (on [::] or the address).
	ReachDirect = "direct"
	// ReachForwarded: the app listens on IPv4 only; man8s-init forwards.
	ReachForwarded = "forwarded"
	// ReachNone: nothing listens on the port (yet).
	ReachNone = "not listening"
	// ReachOff: the forwarder is off and the app listens on IPv4 only.
	ReachOff = "ipv4 only, forwarder off"
	// ReachFailed: the forwarder could not listen there (Error says why).
	ReachFailed = "forward failed"
)

// PortReach is one port's reachability.
type PortReach struct {
	Port string `json:"port"`
	// Ygg and ULA say how the port is reached on the machine's Yggdrasil
	// and ULA addresses (Reach* values).
	Ygg string `json:"ygg"`
	ULA string `json:"ula,omitempty"`
	// Target is the app's IPv4 listener the forwarder dials.
	Target string `json:"target,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Reachability is what man8s-init publishes at ForwardPath.
type Reachability struct {
	YggAddress    string      `json:"ygg_address,omitempty"`
	ProxyProtocol bool        `json:"proxy_protocol,omitempty"`
	Ports         []PortReach `json:"ports"`
}

// ParseProxyProtocol reads MAN8S_FORWARD_PROXY_PROTOCOL: 1 (yes, true)
// or 0 (no, false, empty).
func ParseProxyProtocol(s string) (bool, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", "0", "no", "false":
		return false, nil
	case "1", "yes", "true":
		return true, nil
	}
	return false, fmt.Errorf("%s=%s: want 1 (send a PROXY protocol v2 header) or 0", KeyForwardProxyProtocol, s)
}

// ParseForwardPorts reads MAN8S_FORWARD_PORTS: the ports, or off (false).
func ParseForwardPorts(s string) ([]Port, bool, error) {
	if strings.EqualFold(strings.TrimSpace(s), ForwardOff) {
		return nil, false, nil
	}
	ps, err := ParsePorts(s)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w (or %s to turn the forwarder off)", KeyForwardPorts, err, ForwardOff)
	}
	return ps, true, nil
}
