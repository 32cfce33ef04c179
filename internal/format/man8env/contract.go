package man8env

import (
	"fmt"
	"slices"
	"strings"
)

// InitMode is how man8s-init runs the app (MAN8S_INIT_MODE).
type InitMode string

// The init modes (DESIGN.md "Init modes").
const (
	// InitSupervise (the default, ProcessTwo=yes): nspawn's stub init is
	// PID 1, man8s-init is PID 2 and supervises the app.
	InitSupervise InitMode = "supervise"
	// InitExecPID1 (ProcessTwo=no): man8s-init is PID 1, sets up, then
	// execs the image's own init.
	InitExecPID1 InitMode = "exec-pid1"
)

// InitModes lists the modes in the order they are documented.
func InitModes() []InitMode { return []InitMode{InitSupervise, InitExecPID1} }

// The settings templates (MAN8S_CONTAINER_TEMPLATE): how a machine is
// attached to the network.
const (
	// TemplateNetworkIsolated is a machine in its own network namespace,
	// attached to the host's bridge by a veth pair.
	TemplateNetworkIsolated = "network_isolated"
	// TemplateMacvlan is a machine in its own network namespace on a
	// macvlan of a host uplink (IPv4 by the LAN's DHCP, IPv6 by SLAAC from
	// the LAN's router), plus a veth to the host's bridge that carries only
	// its Yggdrasil address.
	TemplateMacvlan = "macvlan"
	// TemplateHostNetwork is a machine without network isolation: it shares
	// the host's network namespace, and man8s-init sets up nothing.
	TemplateHostNetwork = "host_network"
)

// templateAliases maps accepted template names to canonical ones.
var templateAliases = map[string]string{
	TemplateNetworkIsolated: TemplateNetworkIsolated,
	"netns-init":            TemplateNetworkIsolated,
	TemplateMacvlan:         TemplateMacvlan,
	TemplateHostNetwork:     TemplateHostNetwork,
}

// Templates lists the canonical template names.
func Templates() []string {
	return []string{TemplateNetworkIsolated, TemplateMacvlan, TemplateHostNetwork}
}

// TemplateSummary is one line on what template t (canonical) gives a
// machine, for --help and the manual.
func TemplateSummary(t string) string {
	switch t {
	case TemplateNetworkIsolated:
		return "own network namespace on the bridge: DHCP, SLAAC, Yggdrasil (alias netns-init)"
	case TemplateMacvlan:
		return "own MAC on the LAN by the uplink: the LAN's DHCP and SLAAC; Yggdrasil by the bridge"
	case TemplateHostNetwork:
		return "no isolation: the host's interfaces and addresses; no network setup"
	}
	return ""
}

// HasOwnNetwork reports whether machines of template t (canonical) have a
// network namespace of their own that man8s-init configures (all but
// host_network).
func HasOwnNetwork(t string) bool { return t != TemplateHostNetwork }

// ParseTemplate returns the canonical name of the template named s (a
// canonical name or an alias).
func ParseTemplate(s string) (string, error) {
	if c, ok := templateAliases[s]; ok {
		return c, nil
	}
	var aliases []string
	for a, c := range templateAliases {
		if a != c {
			aliases = append(aliases, a+" for "+c)
		}
	}
	slices.Sort(aliases)
	return "", fmt.Errorf("unknown template %q (known: %s; aliases: %s)", s, strings.Join(Templates(), ", "), strings.Join(aliases, ", "))
}

// Paths inside a machine's root filesystem that mbctl writes and
// man8s-init runs from.
const (
	// InitDir is the directory of the init inside the rootfs.
	InitDir = "/man8s-init"
	// InitPath is man8s-init itself (the settings' Parameters=).
	InitPath = InitDir + "/man8s-init"
	// BusyboxPath is the static busybox installed as a debug shell.
	BusyboxPath = InitDir + "/busybox"
	// EnvPath is where man8env.env is bound inside the machine.
	EnvPath = "/man8env.env"
)

// AutoUpdate is a machine's MAN8S_AUTO_UPDATE policy, read by
// `mbctl machines auto-update` (as podman's AutoUpdate=).
type AutoUpdate string

const (
	// AutoUpdateOff (the key empty or absent) leaves the machine alone.
	AutoUpdateOff AutoUpdate = ""
	// AutoUpdateRegistry upgrades the machine when the digest of its image
	// reference (MAN8S_OCI_IMAGE_URL) moves in the registry.
	AutoUpdateRegistry AutoUpdate = "registry"
)

// ParseAutoUpdate reads the value of MAN8S_AUTO_UPDATE; surrounding
// spaces do not count.
func ParseAutoUpdate(s string) (AutoUpdate, error) {
	switch v := AutoUpdate(strings.TrimSpace(s)); v {
	case AutoUpdateOff, AutoUpdateRegistry:
		return v, nil
	}
	return "", fmt.Errorf("%s=%s: want %s (or empty or absent for off)", KeyAutoUpdate, s, AutoUpdateRegistry)
}
