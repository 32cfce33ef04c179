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

// TemplateNetworkIsolated is the template of a machine in its own network
// namespace, attached to the host's bridge by a veth pair
// (MAN8S_CONTAINER_TEMPLATE).
const TemplateNetworkIsolated = "network_isolated"

// templateAliases maps accepted template names to canonical ones.
var templateAliases = map[string]string{
	TemplateNetworkIsolated: TemplateNetworkIsolated,
	"netns-init":            TemplateNetworkIsolated,
}

// Templates lists the canonical template names.
func Templates() []string { return []string{TemplateNetworkIsolated} }

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
