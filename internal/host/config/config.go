// Package config loads mbctl's configuration file (TOML).
//
// Every host path mbctl touches is a key here, so tests and unusual hosts can
// move all of them. A missing file means the defaults; an unknown key or a bad
// value is an error that names the key and its line.
package config

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/yggadmin"
	"github.com/man8s/mbctl/internal/image/registry"
	systemdconfigs "github.com/man8s/mbctl/systemd-configs"
)

// DefaultPath is where mbctl looks for its configuration file when neither
// --config nor $MBCTL_CONFIG names one.
const DefaultPath = "/etc/man8s/mbctl.toml"

// EnvVar names the environment variable that overrides DefaultPath.
const EnvVar = "MBCTL_CONFIG"

// Config is the effective configuration. The toml tags are the file's keys;
// the comment tags are shown by `mbctl config show`.
type Config struct {
	Paths      Paths      `toml:"paths"`
	Network    Network    `toml:"network"`
	Machines   Machines   `toml:"machines"`
	Registries Registries `toml:"registries"`
}

// Paths are the host directories mbctl manages. All must be absolute.
type Paths struct {
	Machines   string `toml:"machines" comment:"machine root filesystems (one dir per machine)"`
	Images     string `toml:"images" comment:"image roots: each image's tree once, shared read-only by strict machines; on btrfs the origin of every machine's snapshot (default: <machines>/.images, on the machines' file system)"`
	Configs    string `toml:"configs" comment:"machine config dirs: container.nspawn, man8env.env, config volumes"`
	Storage    string `toml:"storage" comment:"machine data dirs (data volumes)"`
	Nspawn     string `toml:"nspawn" comment:"where systemd-nspawn reads NAME.nspawn (a symlink to the config dir's file)"`
	Machinectl string `toml:"machinectl" comment:"machinectl image links (NAME -> rootfs)"`
	Cache      string `toml:"cache" comment:"image content cache (OCI image layout)"`
	Scratch    string `toml:"scratch" comment:"mbctl's run journals (journals/): what a killed run must take back"`
	Networkd   string `toml:"networkd" comment:"where mbctl host setup writes the bridge's systemd-networkd .netdev and .network"`
	Sysctl     string `toml:"sysctl" comment:"where mbctl host setup writes the forwarding sysctl drop-in"`
	// SystemdUnits is where systemd reads unit drop-ins.
	SystemdUnits string `toml:"systemd_units" comment:"where mbctl writes drop-ins for systemd-nspawn@NAME.service (machines depend, --restart)"`
}

// Network configures the host side of the machines' network.
type Network struct {
	Bridge    string `toml:"bridge" comment:"bridge the machines are attached to"`
	IPv4      string `toml:"ipv4" comment:"the bridge's IPv4 address and the machines' subnet, e.g. 192.168.77.1/24: host setup gives the bridge this address and its DHCP server hands out the subnet (pick one no LAN of the host uses)"`
	Uplink    string `toml:"uplink" comment:"host interface on the LAN whose macvlans the macvlan template's machines get (pull --uplink overrides it; empty: none)"`
	YggAdmin  string `toml:"ygg_admin" comment:"Yggdrasil admin endpoint: unix:///path or tcp://host:port"`
	YggPrefix string `toml:"ygg_prefix" comment:"fixed Yggdrasil subnet, used when the admin endpoint is unreachable (e.g. 300:1234::/64)"`
	// IPv6Uplink is IPv6UplinkAuto, IPv6UplinkYes or IPv6UplinkNo.
	IPv6Uplink string `toml:"ipv6_uplink" comment:"does this host reach the IPv6 internet? auto (look for an IPv6 default route), yes or no; without, the bridge advertises no IPv6 default route and new machines get MAN8S_IPV6=optional"`
}

// Values of network.ipv6_uplink.
const (
	IPv6UplinkAuto = "auto"
	IPv6UplinkYes  = "yes"
	IPv6UplinkNo   = "no"
)

// Machines holds defaults for new machines.
type Machines struct {
	DefaultTemplate string `toml:"default_template" comment:"template for new machines: network_isolated (own network namespace on the bridge), macvlan (own MAC on the LAN through network.uplink, Yggdrasil through the bridge) or host_network (the host's network, no isolation)"`
	Busybox         string `toml:"busybox" comment:"static busybox installed into machines as a debug shell (also searched on PATH)"`
	Init            string `toml:"init" comment:"man8s-init binary installed into machines ($MBCTL_INIT overrides it); if empty: man8s-init beside mbctl, else PREFIX/lib/man8s/man8s-init, else mbctl itself as a multi-call binary"`
}

// Registries configures how images are fetched.
type Registries struct {
	Mirrors  map[string][]string `toml:"mirrors" comment:"registry host -> mirror endpoints tried in order before it"`
	Insecure []string            `toml:"insecure" comment:"registries reached over plain HTTP (loopback always may)"`
	CAFile   string              `toml:"ca_file" comment:"extra CA certificates (PEM) trusted for registries"`
	Attempts int                 `toml:"attempts" comment:"how often a layer download is tried (cut or stalled downloads resume where they stopped)"`
	// HeaderTimeout and IdleTimeout are Go durations ("30s", "2m"); "0"
	// means no limit.
	HeaderTimeout string `toml:"header_timeout" comment:"how long to wait for a registry's response headers"`
	IdleTimeout   string `toml:"idle_timeout" comment:"how long a download may go without a byte before it counts as stalled"`
}

// Timeouts returns the registries' header and idle timeouts; a negative
// value means no limit (registry.Options' convention).
func (r Registries) Timeouts() (header, idle time.Duration, err error) {
	parse := func(key, s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			return 0, fmt.Errorf("registries.%s: %q is not a duration such as \"30s\" or \"2m\"", key, s)
		case d < 0:
			return 0, fmt.Errorf("registries.%s: %q is negative (\"0\" means no limit)", key, s)
		case d == 0:
			return -1, nil
		}
		return d, nil
	}
	if header, err = parse("header_timeout", r.HeaderTimeout); err != nil {
		return 0, 0, err
	}
	idle, err = parse("idle_timeout", r.IdleTimeout)
	return header, idle, err
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Paths: Paths{
			Machines:     "/var/lib/man8machines",
			Images:       "/var/lib/man8machines/.images",
			Configs:      "/var/lib/man8machine_configs",
			Storage:      "/var/lib/man8machine_storage",
			Nspawn:       "/etc/systemd/nspawn",
			Machinectl:   "/var/lib/machines",
			Cache:        "/var/cache/man8s",
			Scratch:      "/var/tmp/man8s",
			Networkd:     "/etc/systemd/network",
			Sysctl:       "/etc/sysctl.d",
			SystemdUnits: "/etc/systemd/system",
		},
		Network: Network{
			Bridge:     "srvgrp0",
			IPv4:       systemdconfigs.BridgeIPv4,
			YggAdmin:   "unix:///var/run/yggdrasil.sock",
			IPv6Uplink: IPv6UplinkAuto,
		},
		Machines: Machines{
			DefaultTemplate: man8env.TemplateNetworkIsolated,
			Busybox:         "/usr/bin/busybox",
		},
		Registries: Registries{Mirrors: map[string][]string{}, Attempts: registry.DefaultBlobAttempts,
			HeaderTimeout: registry.DefaultResponseHeaderTimeout.String(), IdleTimeout: registry.DefaultIdleTimeout.String()},
	}
}

// Origin records where the configuration came from.
type Origin struct {
	// Path is the file that was consulted.
	Path string
	// Found is false when the file does not exist and defaults apply.
	Found bool
	// lines maps a dotted key ("paths.cache") to its line in Path.
	lines map[string]int
}

// Source says where the value of a dotted key came from: "FILE:LINE" or
// "default".
func (o Origin) Source(key string) string {
	if line := o.Line(key); line > 0 {
		return fmt.Sprintf("%s:%d", o.Path, line)
	}
	return "default"
}

// Line returns the line of Path that sets the dotted key, or 0 if the value
// is a default. A table key such as registries.mirrors, set key by key, is
// on the line of its first key.
func (o Origin) Line(key string) int {
	if line, ok := o.lines[key]; ok {
		return line
	}
	first := 0
	for k, line := range o.lines {
		if strings.HasPrefix(k, key+".") && (first == 0 || line < first) {
			first = line
		}
	}
	return first
}

// Path returns the configuration file to use: flagValue if set, else
// $MBCTL_CONFIG, else DefaultPath.
func Path(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := getenv(EnvVar); v != "" {
		return v
	}
	return DefaultPath
}

// Load reads the file at path on top of the defaults. A missing file is not
// an error (the defaults apply) unless required is true, which callers set
// when the user named the file explicitly.
func Load(path string, required bool) (Config, Origin, error) {
	origin := Origin{Path: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !required:
		return Default(), origin, nil
	case err != nil:
		return Config{}, origin, fmt.Errorf("reading config: %w", err)
	}
	origin.Found = true
	cfg, lines, err := Parse(path, data)
	origin.lines = lines
	return cfg, origin, err
}

// Parse decodes file content (named path in errors) on top of the defaults and
// validates the result. It also returns the line of every key set.
func Parse(path string, data []byte) (Config, map[string]int, error) {
	cfg := Default()
	lines, err := keyLines(data)
	if err != nil {
		return Config{}, nil, fmt.Errorf("config %s: %w", path, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, nil, describeDecodeError(path, err)
	}
	if _, set := lines["paths.images"]; !set {
		// Beside the machines unless set: snapshots need one file system.
		cfg.Paths.Images = filepath.Join(cfg.Paths.Machines, ".images")
	}
	if err := cfg.validate(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			if line, ok := lines[ke.key]; ok {
				return Config{}, nil, fmt.Errorf("config %s:%d: %w", path, line, err)
			}
		}
		return Config{}, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, lines, nil
}

func describeDecodeError(path string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var errs []error
		for _, e := range strict.Errors {
			row, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			errs = append(errs, fmt.Errorf("config %s:%d: unknown key %q (see `mbctl config show` for the valid keys)", path, row, key))
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		if k := de.Key(); len(k) > 0 {
			return fmt.Errorf("config %s:%d: key %q: %w", path, row, strings.Join(k, "."), err)
		}
		return fmt.Errorf("config %s:%d: %w", path, row, err)
	}
	return fmt.Errorf("config %s: %w", path, err)
}

// keyLines maps each dotted key set in data to the line it is set on.
func keyLines(data []byte) (map[string]int, error) {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(expr.Key())
		case unstable.KeyValue:
			it := expr.Key()
			parts := keyParts(it)
			full := strings.Join(append(append([]string{}, table...), parts...), ".")
			k := expr.Key()
			k.Next()
			lines[full] = p.Shape(k.Node().Raw).Start.Line
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("line %d: %s", p.Shape(p.Range(perr.Highlight)).Start.Line, perr.Message)
		}
		return nil, err
	}
	return lines, nil
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// keyError is a validation error about one dotted key.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return fmt.Sprintf("%s: %v", e.key, e.err) }
func (e *keyError) Unwrap() error { return e.err }

func (c Config) validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, &keyError{key: key, err: fmt.Errorf(format, args...)})
	}
	pv := reflect.ValueOf(c.Paths)
	for i := range pv.NumField() {
		key := "paths." + pv.Type().Field(i).Tag.Get("toml")
		p := pv.Field(i).String()
		if !filepath.IsAbs(p) {
			bad(key, "%q is not an absolute path", p)
		}
	}
	if err := ValidateIfName(c.Network.Bridge); err != nil {
		bad("network.bridge", "%w", err)
	}
	if _, err := c.BridgeIPv4(); err != nil {
		bad("network.ipv4", "%w", err)
	}
	if c.Network.Uplink != "" {
		if err := ValidateIfName(c.Network.Uplink); err != nil {
			bad("network.uplink", "%w", err)
		}
	}
	if _, _, err := yggadmin.ParseEndpoint(c.Network.YggAdmin); err != nil {
		bad("network.ygg_admin", "%w", err)
	}
	if c.Network.YggPrefix != "" {
		if _, err := c.YggPrefix(); err != nil {
			bad("network.ygg_prefix", "%w", err)
		}
	}
	switch c.Network.IPv6Uplink {
	case IPv6UplinkAuto, IPv6UplinkYes, IPv6UplinkNo:
	default:
		bad("network.ipv6_uplink", "%q: want auto, yes or no", c.Network.IPv6Uplink)
	}
	if _, err := man8env.ParseTemplate(c.Machines.DefaultTemplate); err != nil {
		bad("machines.default_template", "%w", err)
	}
	if c.Machines.Init != "" && !filepath.IsAbs(c.Machines.Init) {
		bad("machines.init", "%q is not an absolute path", c.Machines.Init)
	}
	for host, mirrors := range c.Registries.Mirrors {
		for _, m := range mirrors {
			if err := registry.ValidateMirror(m); err != nil {
				bad("registries.mirrors."+host, "%w", err)
			}
		}
	}
	if c.Registries.Attempts < 1 {
		bad("registries.attempts", "%d: want 1 or more", c.Registries.Attempts)
	}
	if _, _, err := c.Registries.Timeouts(); err != nil {
		k, msg, _ := strings.Cut(err.Error(), ": ")
		bad(k, "%s", msg)
	}
	for _, h := range c.Registries.Insecure {
		if h == "" || strings.ContainsAny(h, "/ \t") {
			bad("registries.insecure", "%q is not a registry host[:port]", h)
		}
	}
	if c.Registries.CAFile != "" && !filepath.IsAbs(c.Registries.CAFile) {
		bad("registries.ca_file", "%q is not an absolute path", c.Registries.CAFile)
	}
	return errors.Join(errs...)
}

// YggPrefix returns the configured fixed Yggdrasil subnet; ok is false when
// none is configured.
func (c Config) YggPrefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(c.Network.YggPrefix)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv6 prefix like 300:1234:5678:9abc::/64", c.Network.YggPrefix)
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv6 prefix", c.Network.YggPrefix)
	}
	return p.Masked(), nil
}

// ValidateIfName checks that name can be a Linux network interface name.
func ValidateIfName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("interface name %q must be 1 to 15 characters", name)
	}
	if strings.ContainsAny(name, "/ \t\n:") || name == "." || name == ".." {
		return fmt.Errorf("interface name %q must not contain '/', ':' or spaces", name)
	}
	return nil
}

// BridgeIPv4 returns network.ipv4: the bridge's IPv4 address with the
// machines' subnet as its prefix. It must be an IPv4 host address of a
// subnet of 4 to 2^24 addresses (/8 to /30), neither its network nor its
// broadcast address.
func (c Config) BridgeIPv4() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(c.Network.IPv4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not ADDRESS/PREFIX (e.g. 192.168.77.1/24)", c.Network.IPv4)
	}
	a := p.Addr()
	if !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("%s is not an IPv4 address", p)
	}
	if p.Bits() < 8 || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("%s: the prefix must be /8 to /30", p)
	}
	b := a.As4()
	host := binary.BigEndian.Uint32(b[:]) & (1<<(32-p.Bits()) - 1)
	if host == 0 || host == 1<<(32-p.Bits())-1 {
		return netip.Prefix{}, fmt.Errorf("%s is the subnet's network or broadcast address: give the bridge a host address, e.g. %s", p, p.Masked().Addr().Next())
	}
	if a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
		return netip.Prefix{}, fmt.Errorf("%s is not a unicast address for a LAN", p)
	}
	return p, nil
}
