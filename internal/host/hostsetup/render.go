// Package hostsetup prepares a host for Man8S machines: it renders the
// machines' bridge for systemd-networkd and the forwarding sysctl drop-in
// from the files shipped in systemd-configs/, plans what would change on
// this host, and applies that plan.
//
// Setup is idempotent: a file is written (atomically) only when its content
// differs, a sysctl only when its value differs, and systemd-networkd is
// reloaded only when one of its files changed.
//
// Sysctls are applied by writing /proc/sys directly, and only the keys of
// our own drop-in, rather than by `sysctl --system`: that would re-apply
// every drop-in of the host and undo runtime changes an administrator made
// on purpose. The drop-in makes the values survive a reboot. Writing
// /proc/sys/net acts on the caller's network namespace, which is the one
// whose bridge is being set up.
package hostsetup

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"

	systemdconfigs "github.com/man8s/mbctl/systemd-configs"

	"github.com/man8s/mbctl/internal/format/yggaddr"
)

// Names of the shipped files in systemd-configs/.
const (
	shippedNetdev  = "80-man8s-" + systemdconfigs.BridgeName + ".netdev"
	shippedNetwork = "80-man8s-" + systemdconfigs.BridgeName + ".network"
	shippedSysctl  = "99-man8s-forwarding.conf"
)

// Kind says which directory a rendered file belongs in.
type Kind int

const (
	// NetworkdFile: files go into the systemd-networkd directory (paths.networkd).
	NetworkdFile Kind = iota
	// SysctlFile: files go into the sysctl.d directory (paths.sysctl).
	SysctlFile
)

// Rendered is one configuration file with this host's values.
type Rendered struct {
	Name    string
	Kind    Kind
	Content []byte
}

// header starts every file mbctl writes, so that an administrator knows
// where it came from and that a re-run rewrites it.
const header = "# Written by `mbctl host setup`; running it again rewrites this file.\n"

// Render returns the bridge's .netdev and .network for bridge, with the
// machines' Yggdrasil gateway <subnet>::1 of this host's subnet, and the
// forwarding sysctl drop-in, for a host with an IPv6 uplink. The output
// depends only on its arguments.
func Render(bridge string, subnet netip.Prefix) ([]Rendered, error) {
	return RenderFor(Bridge{Name: bridge, Subnet: subnet, IPv6Uplink: true})
}

// Bridge is what the rendered files say of the machines' bridge.
type Bridge struct {
	// Name is the bridge's name (network.bridge).
	Name string
	// IPv4 is its IPv4 address and the machines' DHCP subnet
	// (network.ipv4); zero: the shipped one.
	IPv4 netip.Prefix
	// Subnet is this host's Yggdrasil subnet; the bridge gets <subnet>::1.
	Subnet netip.Prefix
	// IPv6Uplink says the host has IPv6 to the internet; without, the
	// router advertisements offer no default route (NoDefaultRouter).
	IPv6Uplink bool
}

// NetworkFile is the name of the .network that setup writes for bridge
// into paths.networkd.
func NetworkFile(bridge string) string { return "80-man8s-" + bridge + ".network" }

// NoDefaultRouter is the line of the bridge's [IPv6SendRA] on a host
// without IPv6 uplink: its router advertisements offer no default route.
const NoDefaultRouter = "RouterLifetimeSec=0"

// noUplinkRA goes right below [IPv6SendRA] on a host without IPv6 uplink.
const noUplinkRA = "# This host has no IPv6 uplink (`mbctl host setup` found no IPv6 default\n" +
	"# route, or network.ipv6_uplink = no in mbctl.toml): the advertisements\n" +
	"# offer no default route, so machines do not send internet-bound IPv6\n" +
	"# here, where it has nowhere to go. They still get their fc00::/64\n" +
	"# address by SLAAC, and the prefix stays on-link, so they reach each\n" +
	"# other over it; Yggdrasil has its own route. Run `mbctl host setup`\n" +
	"# again once the host has IPv6: it removes these lines.\n" +
	NoDefaultRouter + "\n"

// RenderFor is Render for bridge b: its name and IPv4 subnet, and a host
// with or without an IPv6 uplink.
func RenderFor(b Bridge) ([]Rendered, error) {
	bridge, subnet, ipv6Uplink := b.Name, b.Subnet, b.IPv6Uplink
	ipv4 := systemdconfigs.BridgeIPv4
	if b.IPv4.IsValid() {
		if !b.IPv4.Addr().Is4() {
			return nil, fmt.Errorf("bridge address %s is not IPv4", b.IPv4)
		}
		ipv4 = b.IPv4.String()
	}
	gw, err := yggaddr.Gateway(subnet)
	if err != nil {
		return nil, err
	}
	gwPrefix := netip.PrefixFrom(gw, gw.BitLen()).String()
	var out []Rendered
	for _, f := range []struct {
		shipped, name string
		kind          Kind
	}{
		{shippedNetdev, "80-man8s-" + bridge + ".netdev", NetworkdFile},
		{shippedNetwork, NetworkFile(bridge), NetworkdFile},
		{shippedSysctl, shippedSysctl, SysctlFile},
	} {
		data, err := fs.ReadFile(systemdconfigs.Files, f.shipped)
		if err != nil {
			return nil, fmt.Errorf("reading shipped %s: %w", f.shipped, err)
		}
		s := string(data)
		if f.kind == NetworkdFile {
			s = dropPlaceholderNote(s)
			if !strings.Contains(s, systemdconfigs.YggGateway) && f.shipped == shippedNetwork {
				return nil, fmt.Errorf("shipped %s has no %s placeholder", f.shipped, systemdconfigs.YggGateway)
			}
			s = strings.ReplaceAll(s, systemdconfigs.YggGateway, gwPrefix)
			s = strings.ReplaceAll(s, systemdconfigs.YggSubnet, subnet.Masked().String())
			s = strings.ReplaceAll(s, systemdconfigs.BridgeName, bridge)
			if f.shipped == shippedNetwork {
				const addr = "\nAddress=" + systemdconfigs.BridgeIPv4 + "\n"
				if !strings.Contains(s, addr) {
					return nil, fmt.Errorf("shipped %s has no line Address=%s", f.shipped, systemdconfigs.BridgeIPv4)
				}
				s = strings.Replace(s, addr, "\nAddress="+ipv4+"\n", 1)
			}
			if !ipv6Uplink && f.shipped == shippedNetwork {
				const section = "\n[IPv6SendRA]\n"
				if !strings.Contains(s, section) {
					return nil, fmt.Errorf("shipped %s has no [IPv6SendRA] section", f.shipped)
				}
				s = strings.Replace(s, section, section+noUplinkRA, 1)
			}
		}
		out = append(out, Rendered{Name: f.name, Kind: f.kind, Content: []byte(header + s)})
	}
	return out, nil
}

// dropPlaceholderNote removes the comment block that starts with
// "# >>> PLACEHOLDER" (instructions for filling the file in by hand), which
// is wrong once the placeholder is filled in.
func dropPlaceholderNote(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	skipping := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# >>> PLACEHOLDER") {
			skipping = true
			continue
		}
		if skipping && strings.HasPrefix(line, "#") {
			continue
		}
		skipping = false
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Sysctls parses a sysctl.d file: "key = value" lines, '#' and ';'
// comments. It returns the keys in file order with their values.
func Sysctls(content []byte) ([][2]string, error) {
	var kv [][2]string
	sc := bufio.NewScanner(strings.NewReader(string(content)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || strings.Contains(k, "..") || strings.ContainsAny(k, "/ ") {
			return nil, fmt.Errorf("line %d: %q is not key = value", n, line)
		}
		kv = append(kv, [2]string{k, v})
	}
	return kv, nil
}

// sysctlPath is key's file under procSys (/proc/sys).
func sysctlPath(procSys, key string) string {
	return filepath.Join(procSys, strings.ReplaceAll(key, ".", "/"))
}
