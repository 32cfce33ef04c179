// Package systemdconfigs holds the host network configuration Man8S ships:
// the machines' bridge for systemd-networkd and the forwarding sysctls. The
// files in this directory are installed as examples by `make install`, used
// by the e2e testbed with test values, and written by `mbctl host setup`.
// The directory also holds the units that run `mbctl machines auto-update`
// daily (mbctl-auto-update.service and .timer), which `make install` puts
// in the systemd unit dir; they are not embedded.
package systemdconfigs

import "embed"

// Files are the shipped configuration files, by base name.
//
//go:embed *.netdev *.network *.conf
var Files embed.FS

// Placeholders in the shipped files, replaced with a host's real values.
const (
	// BridgeName is the bridge's name in the shipped files.
	BridgeName = "srvgrp0"
	// BridgeIPv4 is the bridge's IPv4 address and subnet.
	BridgeIPv4 = "192.168.77.1/24"
	// BridgeULA is the bridge's ULA address and prefix.
	BridgeULA = "fc00::f:e:d:c/64"
	// YggGateway stands for the host's Yggdrasil subnet with ::1, as a
	// /128 (the bridge's address: see the .network for why not the /64).
	YggGateway = "YGGDRASIL_SUBNET::1/128"
	// YggSubnet stands for the host's Yggdrasil subnet, routed onto the
	// bridge.
	YggSubnet = "YGGDRASIL_SUBNET::/64"
)
