// Package hostcheck checks that a host has what Man8S machines need:
// systemd-nspawn, user namespaces and idmapped mounts, the machines' bridge
// with its addresses, the uplink's IPv4 and IPv6 default routes,
// forwarding, Yggdrasil, a static busybox, a running systemd-networkd and
// writable directories.
//
// Every probe of the host goes through Probes, so tests run the checks
// against fakes. The probes never change anything persistent: the idmap
// probe clones a mount that is never attached and is gone when its file
// descriptor is closed, the user namespace lives as long as a stopped child
// process, and the writability probe removes its temp file at once.
package hostcheck

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/image/gunzip"
)

// Status is the outcome of one check.
type Status int

const (
	// OK: the prerequisite is met.
	OK Status = iota
	// Warn: Man8S works, but something is missing or could not be verified.
	Warn
	// Fail: machines will not work until this is fixed.
	Fail
	// Absent: something optional the host does not have, such as IPv6 to
	// the internet; machines work without it, and the detail says what
	// they lack. Not a problem to fix.
	Absent
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Absent:
		return "absent"
	}
	return "fail"
}

// MarshalText makes the status "ok", "warn", "fail" or "absent" in JSON.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is one checked prerequisite.
type Result struct {
	// Name says what was checked ("systemd-nspawn", "bridge srvgrp0" ...).
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail is what was found.
	Detail string `json:"detail"`
	// Fix says how to fix a warning or failure.
	Fix string `json:"fix,omitempty"`
}

// Links reads network links and their addresses; a *netlink.Handle is one.
type Links interface {
	LinkByName(name string) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
}

// Probes are how the checks look at the host. Default fills in the real ones.
type Probes struct {
	// Proc is the procfs mount ("/proc").
	Proc string
	// Links reads the links of the host's network namespace.
	Links Links
	// Output runs a program and returns its standard output.
	Output func(ctx context.Context, name string, args ...string) ([]byte, error)
	// LookPath finds a program on PATH.
	LookPath func(name string) (string, error)
	// Subnet returns this host's Yggdrasil subnet and where it came from
	// (ygg.SubnetFromNode or ygg.SubnetFromConfig).
	Subnet func(ctx context.Context) (netip.Prefix, string, error)
	// Userns creates and discards a user namespace.
	Userns func(ctx context.Context) error
	// Idmap makes an idmapped mount of dir that is never attached.
	Idmap func(ctx context.Context, dir string) error
	// CheckStatic returns nil if path is an executable regular file that is
	// statically linked, else why not (initinstall.CheckStatic).
	CheckStatic func(path string) error
	// Geteuid is the effective user id; probes that need root are skipped
	// (with a warning) otherwise.
	Geteuid func() int
	// Uplink reads the host's default routes (uplink.Probe).
	Uplink func() (uplink.Uplink, error)
}

// Run checks every prerequisite of cfg's host, in a fixed order, and
// returns one result per check.
func Run(ctx context.Context, cfg config.Config, p Probes) []Result {
	subnet, source, subnetErr := p.Subnet(ctx)
	results := []Result{
		checkNspawn(ctx, p),
		checkUserns(ctx, p),
		checkIdmap(ctx, cfg, p),
		checkYgg(cfg, subnet, source, subnetErr),
		checkBridge(cfg.Network.Bridge, subnet, subnetErr, p.Links),
	}
	results = append(results, checkUplink(cfg, p.Uplink)...)
	if cfg.Network.Uplink != "" {
		results = append(results, checkMacvlanUplink(cfg.Network.Uplink, p.Links))
	}
	return append(results,
		checkForwarding(p.Proc),
		checkNetworkd(p.Proc),
		checkBusybox(cfg.Machines.Busybox, p),
		checkGzip(gunzip.Engine, gunzip.Fast),
		checkDirs(cfg.Paths),
	)
}

// Failed counts the results with status Fail.
func Failed(results []Result) int {
	n := 0
	for _, r := range results {
		if r.Status == Fail {
			n++
		}
	}
	return n
}

func ok(name, format string, args ...any) Result {
	return Result{Name: name, Status: OK, Detail: fmt.Sprintf(format, args...)}
}

func warn(name, fix, format string, args ...any) Result {
	return Result{Name: name, Status: Warn, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func absent(name, format string, args ...any) Result {
	return Result{Name: name, Status: Absent, Detail: fmt.Sprintf(format, args...)}
}

func fail(name, fix, format string, args ...any) Result {
	return Result{Name: name, Status: Fail, Detail: fmt.Sprintf(format, args...), Fix: fix}
}
