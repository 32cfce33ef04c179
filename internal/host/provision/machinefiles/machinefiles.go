// Package machinefiles generates the two files that configure a machine from
// its image: container.nspawn (systemd-nspawn's settings) and man8env.env
// (the application's environment, read by man8s-init). See DESIGN.md, "The
// settings file" and "man8env.env".
//
// Both files start with a header saying where they came from and that they
// may be edited; comments are on lines of their own, since systemd reads
// "Key=value # text" as part of the value.
package machinefiles

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
)

// Bind is a host directory or file bound into the machine, rendered as
// Bind=Host:Container:idmap.
type Bind struct {
	Host, Container string
}

// EnvVar is a variable of the app's environment given at pull
// (machines pull --env-file, --env).
type EnvVar struct {
	Key, Value string
}

// Params is everything the two files are made from.
type Params struct {
	// Name is the machine name.
	Name string
	// Template is one of man8env.Templates (or an alias of one).
	Template string
	// Bridge is the host bridge the machine is attached to
	// (config network.bridge); the macvlan template's Yggdrasil link too.
	Bridge string
	// Uplink is the host interface the macvlan template's machine gets a
	// macvlan of (config network.uplink, pull --uplink).
	Uplink string
	// YggAddress is the machine's Yggdrasil address; host_network
	// machines have none (the field is ignored).
	YggAddress netip.Addr
	// ImageRef is the reference the user pulled; ImageDigest the manifest
	// digest ("sha256:...").
	ImageRef, ImageDigest string
	// Image is the image's configuration.
	Image v1.Config
	// Mode is the chosen init mode: Supervise or ExecPID1.
	Mode imageinit.Mode
	// KillSignal is the settings' KillSignal= (see imageinit.KillSignal).
	KillSignal string
	// EnvFile is the host path of man8env.env, bound to /man8env.env.
	EnvFile string
	// Strict makes the machine run on its image's shared root, read-only;
	// ResolvFile is then the host file bound to /etc/resolv.conf, which
	// man8s-init writes (the root's own cannot be).
	Strict     bool
	ResolvFile string
	// Binds are the volumes, in order.
	Binds []Bind
	// Env are variables given at pull, set in man8env.env in order after
	// the image's own, with the file's literal rules: a key the file holds
	// already (the image's, or MAN8S_STOP_SIGNAL) gets the new value in
	// its place, any other is added at the end. A key must pass
	// man8env.CheckUserKey.
	Env []EnvVar
	// NoIPv6Uplink, if set, says why the host has no IPv6 to the internet
	// ("no IPv6 default route"): man8env.env then gets
	// MAN8S_IPV6=optional below a comment that says so, unless the image
	// or Env sets MAN8S_IPV6.
	NoIPv6Uplink string
	// Ports are published on the host (machines pull --publish): Port=
	// lines in [Network], in order. Like Env they are the user's: the
	// merge base (writeBase) has none, so upgrades keep them.
	Ports []nspawnport.Port
	// Version is mbctl's version; Created when the files were made.
	Version string
	Created time.Time
}

// mbctlKeys are the keys Env writes itself, which an image must not set.
var mbctlKeys = []string{man8env.KeyName, man8env.KeyTemplate, man8env.KeyYggAddress, man8env.KeyImageURL, man8env.KeyDigest, man8env.KeyArgs,
	man8env.KeyUser, man8env.KeyStopSignal, man8env.KeyInitMode, man8env.KeyVersion, man8env.KeyCreatedAt, man8env.KeyStrict,
	man8env.KeyHealthcheck, man8env.KeyHealthcheckInterval, man8env.KeyHealthcheckTimeout, man8env.KeyHealthcheckStartPeriod, man8env.KeyHealthcheckRetries,
	man8env.KeyExposedPorts}

// settingsEnv are the image's variables that go to the settings file's
// Environment= instead of man8env.env.
var settingsEnv = []string{"PATH", "TERM", "HOME", "LANG"}

// check validates what both files need and returns the canonical template.
func (p Params) check() (string, error) {
	if err := machine.ValidateName(p.Name); err != nil {
		return "", err
	}
	tmpl, err := man8env.ParseTemplate(p.Template)
	if err != nil {
		return "", err
	}
	for _, s := range []struct{ what, v string }{
		{"image reference", p.ImageRef}, {"image digest", p.ImageDigest}, {"mbctl version", p.Version},
	} {
		if s.v == "" || strings.ContainsAny(s.v, "\n\r\x00") || strings.TrimSpace(s.v) != s.v {
			return "", fmt.Errorf("%s %q: empty, or holds a line break, NUL or surrounding whitespace", s.what, s.v)
		}
	}
	if p.Created.IsZero() {
		return "", fmt.Errorf("creation time is not set")
	}
	if p.Mode != imageinit.Supervise && p.Mode != imageinit.ExecPID1 {
		return "", fmt.Errorf("init mode %q: want %s or %s (choose it with imageinit.Choose)", p.Mode, imageinit.Supervise, imageinit.ExecPID1)
	}
	return tmpl, nil
}

// header returns the comment lines both files start with.
func (p Params) header(what string) string {
	return fmt.Sprintf("# %s of machine %s.\n# Generated by mbctl %s from %s at %s; edit freely.\n",
		what, p.Name, p.Version, p.ImageRef, p.Created.UTC().Format(time.RFC3339))
}

// imageEnv returns the image's environment as keys in order of first
// appearance and the value of each key's last assignment. An entry without
// '=' or with a key or value that cannot be carried is an error naming it.
func imageEnv(c v1.Config) ([]string, map[string]string, error) {
	var keys []string
	vals := map[string]string{}
	for i, kv := range c.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, nil, fmt.Errorf("image Env[%d] %q is not KEY=VALUE", i, k)
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	return keys, vals, nil
}

// Settings returns the machine's container.nspawn.
func Settings(p Params) (*unitfile.File, error) {
	tmpl, err := p.check()
	if err != nil {
		return nil, fmt.Errorf("generating settings: %w", err)
	}
	f, err := settings(p, tmpl)
	if err != nil {
		return nil, fmt.Errorf("generating settings of machine %s: %w", p.Name, err)
	}
	return f, nil
}

func settings(p Params, tmpl string) (*unitfile.File, error) {
	var b strings.Builder
	var errs []error
	line := func(key, value string) {
		if err := unitfile.ValidateValue(key, value); err != nil {
			errs = append(errs, err)
			return
		}
		fmt.Fprintf(&b, "%s=%s\n", key, value)
	}
	comment := func(s string) { fmt.Fprintf(&b, "# %s\n", s) }

	b.WriteString(p.header("systemd-nspawn settings (man systemd.nspawn)"))
	comment(`Comments go on lines of their own: systemd reads "Key=value # text" as the value.`)

	b.WriteString("\n[Exec]\n")
	line("Boot", "no")
	switch p.Mode {
	case imageinit.Supervise:
		comment("Init mode supervise: nspawn's stub init is PID 1 and man8s-init, as PID 2,")
		comment("supervises the app and stops it with the image's stop signal.")
		line("ProcessTwo", "yes")
		comment("systemd counts the machine as started when man8s-init says the app is ready")
		comment("(MAN8S_READY, else the image's HEALTHCHECK, else the app has started).")
		line("NotifyReady", "yes")
	case imageinit.ExecPID1:
		comment("Init mode exec-pid1: man8s-init is PID 1, sets up, then execs the image's init.")
		line("ProcessTwo", "no")
	}
	kill, err := normalSignal(p.KillSignal)
	if err != nil {
		return nil, fmt.Errorf("KillSignal: %w", err)
	}
	comment("Sent to PID 1 when the machine is stopped; without it nspawn sends SIGKILL.")
	line("KillSignal", kill)
	line("Parameters", man8env.InitPath)
	switch {
	case p.Strict && tmpl == man8env.TemplateHostNetwork:
		comment("Strict: the root is read-only; the host's /etc/resolv.conf is bound, read-only.")
		line("ResolvConf", "off")
		line("Timezone", "off")
	case p.Strict:
		comment("Strict: the root is read-only; /etc/resolv.conf is bound from the config dir.")
		line("ResolvConf", "off")
		line("Timezone", "off")
	case tmpl == man8env.TemplateHostNetwork:
		comment("The host's network: its resolver configuration works as it is.")
		line("ResolvConf", "copy-host")
		line("Timezone", "copy")
	default:
		line("ResolvConf", "copy-stub")
		line("Timezone", "copy")
	}
	line("LinkJournal", "no")
	line("PrivateUsers", "pick")
	keys, vals, err := imageEnv(p.Image)
	if err != nil {
		return nil, err
	}
	first := true
	for _, k := range keys {
		if !slices.Contains(settingsEnv, k) {
			continue
		}
		if first {
			comment("From the image; its other variables are in man8env.env.")
			first = false
		}
		q, err := unitfile.QuoteEnvironment(k, vals[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("image Env: %w", err))
			continue
		}
		line("Environment", q)
	}
	wd := p.Image.WorkingDir
	if wd == "" {
		wd = "/"
	}
	wd = path.Clean("/" + wd)
	line("WorkingDirectory", wd)

	b.WriteString("\n[Network]\n")
	if err := network(&b, p, tmpl, line, comment); err != nil {
		return nil, err
	}
	if len(p.Ports) > 0 {
		if err := nspawnport.CheckTemplate(tmpl); err != nil {
			return nil, err
		}
		comment("Published on the host (mbctl machines publish/unpublish; applied at the machine's start).")
	}
	for _, port := range p.Ports {
		line("Port", port.Value())
	}

	b.WriteString("\n[Files]\n")
	if p.Strict {
		comment("Strict: the image's root, shared by every strict machine of the image, read-only.")
		comment("State lives in volumes; TemporaryFileSystem=PATH gives scratch space that a stop empties.")
		line("ReadOnly", "yes")
	}
	line("PrivateUsersOwnership", "map")
	comment("The application's environment, read by man8s-init.")
	envBind, err := bindValue(Bind{Host: p.EnvFile, Container: man8env.EnvPath})
	if err != nil {
		return nil, fmt.Errorf("env file: %w", err)
	}
	line("Bind", envBind)
	if p.Strict && tmpl == man8env.TemplateHostNetwork {
		v, err := bindValue(Bind{Host: HostResolvConf, Container: "/etc/resolv.conf"})
		if err != nil {
			return nil, fmt.Errorf("resolv.conf: %w", err)
		}
		line("BindReadOnly", strings.TrimSuffix(v, ":idmap"))
	} else if p.Strict {
		if p.ResolvFile == "" {
			return nil, errors.New("strict machine: no resolv.conf file to bind")
		}
		v, err := bindValue(Bind{Host: p.ResolvFile, Container: "/etc/resolv.conf"})
		if err != nil {
			return nil, fmt.Errorf("resolv.conf: %w", err)
		}
		line("Bind", v)
	}
	for i, bd := range p.Binds {
		if i == 0 {
			comment("Volumes of the image.")
		}
		v, err := bindValue(bd)
		if err != nil {
			return nil, fmt.Errorf("volume %d: %w", i+1, err)
		}
		line("Bind", v)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f, err := unitfile.Parse(strings.NewReader(b.String()))
	if err != nil {
		return nil, fmt.Errorf("parsing the generated file: %w", err)
	}
	return f, nil
}

// HostResolvConf is the host's resolver file, bound read-only into a strict
// host_network machine.
const HostResolvConf = "/etc/resolv.conf"

// network writes the [Network] section of template tmpl.
func network(b *strings.Builder, p Params, tmpl string, line func(k, v string), comment func(string)) error {
	bridge := func() error {
		if err := config.ValidateIfName(p.Bridge); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		return nil
	}
	switch tmpl {
	case man8env.TemplateMacvlan:
		if p.Uplink == "" {
			return errors.New("the macvlan template needs the host's uplink interface: set network.uplink in the configuration or pass --uplink IFACE")
		}
		if err := config.ValidateIfName(p.Uplink); err != nil {
			return fmt.Errorf("uplink: %w", err)
		}
		if err := bridge(); err != nil {
			return err
		}
		comment("Template macvlan: the machine's own MAC address on the host's uplink; man8s-init")
		comment("takes IPv4 (DHCP) and IPv6 (SLAAC) from the LAN on mv-" + p.Uplink + ".")
		line("MACVLAN", p.Uplink)
		comment("A veth pair to the machines' bridge that carries only the Yggdrasil address (host0,")
		comment("no DHCP, no router advertisements); it is also how the host reaches the machine,")
		comment("which a macvlan's own host cannot.")
		line("VirtualEthernet", "yes")
		line("Bridge", p.Bridge)
	case man8env.TemplateHostNetwork:
		comment("Template host_network: no network isolation; the machine sees the host's interfaces")
		comment("and addresses, and man8s-init sets up nothing. \"no\" also overrides the")
		comment("--network-veth of systemd-nspawn@.service.")
		line("VirtualEthernet", "no")
	default:
		if err := bridge(); err != nil {
			return err
		}
		comment("A veth pair whose host side joins the machines' bridge; man8s-init configures host0.")
		line("VirtualEthernet", "yes")
		line("Bridge", p.Bridge)
	}
	return nil
}

// normalSignal returns the systemd name of the signal named s.
func normalSignal(s string) (string, error) {
	sig, err := signals.Parse(s)
	if err != nil {
		return "", err
	}
	return signals.Name(sig), nil
}

// bindValue renders b as a Bind= value with the idmap option. Both paths
// must be absolute and free of control characters; ':' and '\' are escaped
// with a backslash, as systemd-nspawn's Bind= parser expects.
func bindValue(b Bind) (string, error) {
	esc := func(what, p string) (string, error) {
		if !path.IsAbs(p) {
			return "", fmt.Errorf("bind %s path %q is not absolute", what, p)
		}
		for _, c := range p {
			if c < ' ' || c == 0x7f {
				return "", fmt.Errorf("bind %s path %q holds a control character", what, p)
			}
		}
		r := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
		return r.Replace(path.Clean(p)), nil
	}
	host, err := esc("host", b.Host)
	if err != nil {
		return "", err
	}
	cont, err := esc("machine", b.Container)
	if err != nil {
		return "", err
	}
	return host + ":" + cont + ":idmap", nil
}

// Env returns the machine's man8env.env.
func Env(p Params) (*envfile.File, error) {
	tmpl, err := p.check()
	if err != nil {
		return nil, fmt.Errorf("generating env file: %w", err)
	}
	f, err := env(p, tmpl)
	if err != nil {
		return nil, fmt.Errorf("generating env file of machine %s: %w", p.Name, err)
	}
	return f, nil
}

func env(p Params, tmpl string) (*envfile.File, error) {
	ownNet := man8env.HasOwnNetwork(tmpl)
	if ownNet && !p.YggAddress.IsValid() {
		return nil, fmt.Errorf("no Yggdrasil address")
	}
	args, err := applicationArgs(p.Image)
	if err != nil {
		return nil, err
	}
	stop := "SIGTERM"
	if p.Image.StopSignal != "" {
		if stop, err = normalSignal(p.Image.StopSignal); err != nil {
			return nil, fmt.Errorf("image StopSignal: %w", err)
		}
	}
	keys, vals, err := imageEnv(p.Image)
	if err != nil {
		return nil, err
	}

	var b strings.Builder
	var errs []error
	line := func(key, value string) {
		if err := envfile.ValidateKey(key); err != nil {
			errs = append(errs, fmt.Errorf("image Env: %w", err))
			return
		}
		if err := envfile.ValidateValue(key, value); err != nil {
			errs = append(errs, fmt.Errorf("image Env: %w", err))
			return
		}
		fmt.Fprintf(&b, "%s=%s\n", key, value)
	}
	b.WriteString(p.header("Application environment"))
	b.WriteString("# One KEY=VALUE per line, taken literally: no quotes, no $expansion.\n")
	b.WriteString("\n# Man8S, written by mbctl; man8s-init reads them.\n")
	fixed := []struct{ k, v string }{
		{man8env.KeyName, p.Name},
		{man8env.KeyTemplate, tmpl},
	}
	if ownNet {
		// A host_network machine has no address of its own: it uses the
		// host's, so the file claims none.
		fixed = append(fixed, struct{ k, v string }{man8env.KeyYggAddress, p.YggAddress.String()})
	}
	fixed = append(fixed, []struct{ k, v string }{
		{man8env.KeyImageURL, p.ImageRef},
		{man8env.KeyDigest, p.ImageDigest},
		{man8env.KeyArgs, args},
	}...)
	if p.Image.User != "" {
		fixed = append(fixed, struct{ k, v string }{man8env.KeyUser, p.Image.User})
	}
	hc, err := healthcheck(p.Image.Healthcheck)
	if err != nil {
		return nil, err
	}
	fixed = append(fixed, []struct{ k, v string }{
		{man8env.KeyStopSignal, stop},
		{man8env.KeyInitMode, string(p.Mode)},
		{man8env.KeyVersion, p.Version},
		{man8env.KeyCreatedAt, p.Created.UTC().Format(time.RFC3339)},
	}...)
	if p.Strict {
		fixed = append(fixed, struct{ k, v string }{man8env.KeyStrict, "yes"})
	}
	fixed = append(fixed, hc...)
	if ports := exposedPorts(p.Image.ExposedPorts); ports != "" {
		fixed = append(fixed, struct{ k, v string }{man8env.KeyExposedPorts, ports})
	}
	for _, kv := range fixed {
		if err := envfile.ValidateValue(kv.k, kv.v); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s=%s\n", kv.k, kv.v)
	}
	written := map[string]bool{}
	for _, kv := range fixed {
		written[kv.k] = true
	}
	first := true
	for _, k := range keys {
		if slices.Contains(settingsEnv, k) {
			continue
		}
		if slices.Contains(mbctlKeys, k) {
			return nil, fmt.Errorf("image Env sets %s, which mbctl writes itself", k)
		}
		if first {
			b.WriteString("\n# Environment of the image.\n")
			first = false
		}
		line(k, vals[k])
		written[k] = true
	}
	added, givenIPv6 := false, false
	for _, v := range p.Env {
		if err := man8env.CheckUserKey(v.Key); err != nil {
			return nil, fmt.Errorf("environment given at pull: %w", err)
		}
		added = added || !written[v.Key]
		givenIPv6 = givenIPv6 || v.Key == man8env.KeyIPv6
	}
	if p.NoIPv6Uplink != "" && !written[man8env.KeyIPv6] && !givenIPv6 {
		if strings.ContainsAny(p.NoIPv6Uplink, "\n\r\x00") {
			return nil, fmt.Errorf("the reason for no IPv6 uplink %q holds a line break or NUL", p.NoIPv6Uplink)
		}
		fmt.Fprintf(&b, "\n# The host had no IPv6 uplink at pull (%s): the machine has no IPv6\n", p.NoIPv6Uplink)
		b.WriteString("# to the internet, and optional makes that no failure. Its ULA address and\n# Yggdrasil still work. Set required once the host has IPv6.\n")
		fmt.Fprintf(&b, "%s=optional\n", man8env.KeyIPv6)
		written[man8env.KeyIPv6] = true
	}
	if added {
		b.WriteString("\n# Given at pull (--env-file, then --env).\n")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f, err := envfile.Parse(strings.NewReader(b.String()))
	if err != nil {
		return nil, fmt.Errorf("parsing the generated file: %w", err)
	}
	// Set keeps the file's rules: a key written above gets the value in
	// its place, a new one goes at the end, below the comment.
	for _, v := range p.Env {
		if err := f.Set(v.Key, v.Value); err != nil {
			errs = append(errs, fmt.Errorf("environment given at pull: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// applicationArgs returns MAN8S_APPLICATION_ARGS: the image's Entrypoint
// followed by its Cmd, quoted so that `sh -c "exec $ARGS"` runs exactly
// that argv. A word that cannot be carried in the env file is an error
// naming the image field.
// ApplicationArgs is the MAN8S_APPLICATION_ARGS an image config gives:
// its entrypoint and cmd, quoted for a POSIX shell.
func ApplicationArgs(c v1.Config) (string, error) { return applicationArgs(c) }

func applicationArgs(c v1.Config) (string, error) {
	argv := slices.Concat(c.Entrypoint, c.Cmd)
	if len(argv) == 0 {
		return "", fmt.Errorf("the image has neither Entrypoint nor Cmd: nothing to run")
	}
	for _, f := range []struct {
		name  string
		words []string
	}{{"Entrypoint", c.Entrypoint}, {"Cmd", c.Cmd}} {
		for i, w := range f.words {
			if strings.ContainsAny(w, "\n\r\x00") {
				return "", fmt.Errorf("image %s[%d] holds a line break or NUL, which %s cannot carry", f.name, i, man8env.KeyArgs)
			}
		}
	}
	args, err := appargs.Quote(argv)
	if err != nil {
		return "", fmt.Errorf("image Entrypoint and Cmd: %w", err)
	}
	return args, nil
}

// healthcheck returns the MAN8S_HEALTHCHECK* keys for the image's
// HEALTHCHECK (none without one): the test, and those of its interval,
// timeout, start period and retries that the image sets.
func healthcheck(h *v1.HealthConfig) ([]struct{ k, v string }, error) {
	if h == nil || len(h.Test) == 0 {
		return nil, nil
	}
	test, err := man8env.FormatHealthcheck(h.Test)
	if err != nil {
		return nil, fmt.Errorf("image %w", err)
	}
	if strings.ContainsAny(test, "\n\r\x00") {
		return nil, fmt.Errorf("image HEALTHCHECK holds a line break or NUL, which %s cannot carry", man8env.KeyHealthcheck)
	}
	out := []struct{ k, v string }{{man8env.KeyHealthcheck, test}}
	if test == man8env.HealthcheckNone {
		return out, nil
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{
		{man8env.KeyHealthcheckInterval, h.Interval},
		{man8env.KeyHealthcheckTimeout, h.Timeout},
		{man8env.KeyHealthcheckStartPeriod, h.StartPeriod},
	} {
		if d.v > 0 {
			v := d.v.String()
			if d.v%time.Second == 0 {
				v = fmt.Sprintf("%ds", d.v/time.Second) // 60s, not 1m0s
			}
			out = append(out, struct{ k, v string }{d.k, v})
		}
	}
	if h.Retries > 0 {
		out = append(out, struct{ k, v string }{man8env.KeyHealthcheckRetries, fmt.Sprint(h.Retries)})
	}
	return out, nil
}

// exposedPorts returns MAN8S_EXPOSED_PORTS for the image's ExposedPorts
// ("80/tcp", "53/udp"; man8s-init forwards them to an app that listens on
// IPv4 only): those of TCP and UDP, sorted; others (sctp) are left out,
// as man8s-init cannot forward them.
func exposedPorts(exposed map[string]struct{}) string {
	var ports []man8env.Port
	for k := range exposed {
		if p, err := man8env.ParsePort(k); err == nil {
			ports = append(ports, p)
		}
	}
	return man8env.FormatPorts(ports)
}
