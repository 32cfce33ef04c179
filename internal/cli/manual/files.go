package manual

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/config"
)

// configPage is mbctl.toml(5): every key of config.Config with its
// comment and default, in the file's order, and the defaults as a file.
func configPage() (string, error) {
	var b bytes.Buffer
	b.WriteString("# NAME\nmbctl.toml \\- the configuration file of mbctl\n\n")
	section(&b, "SYNOPSIS", "`"+config.DefaultPath+"`, or the file named by `--config FILE` or `$"+config.EnvVar+"`")
	section(&b, "DESCRIPTION", `
A TOML file. Every host path mbctl touches is a key here, so tests and unusual
hosts can move all of them. The default file may be missing: then every key
has its default. A file named by `+"`--config`"+` or `+"`$"+config.EnvVar+"`"+` must exist. An
unknown key or a bad value is an error that names the key and its line.
`+"`mbctl config show`"+` prints the effective configuration and where each value came
from.

The package installs no such file: the host's /etc is left as it is.`)
	defaults := config.Render(config.Default(), config.Origin{})
	values, err := renderedValues(defaults)
	if err != nil {
		return "", err
	}
	entries := config.Entries(config.Default(), config.Origin{})
	if len(values) != len(entries) {
		return "", fmt.Errorf("the rendered defaults have %d keys, the configuration %d", len(values), len(entries))
	}
	current := ""
	for i, e := range entries {
		if e.Section != current {
			current = e.Section
			fmt.Fprintf(&b, "# [%s]\n", current)
		}
		item(&b, e.Dotted(), fmt.Sprintf("%s. Default: `%s`.", escapeText(e.Description), values[i]))
	}
	b.WriteString("# EXAMPLE\nThe defaults, as `mbctl config show` prints them on a host without the file:\n\n```\n")
	b.Write(bytes.TrimSpace(defaults))
	b.WriteString("\n```\n\n")
	section(&b, "SEE ALSO", "**mbctl(1)**, **mbctl-config-show(1)**, **man8env.env(5)**, **man8s.nspawn(5)**")
	return b.String(), nil
}

// renderedValues returns the values of the "key = value" lines of a file
// config.Render wrote, in order.
func renderedValues(file []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(file))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		_, v, ok := strings.Cut(line, " = ")
		if !ok {
			return nil, fmt.Errorf("rendered configuration: line %q is not key = value", line)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// envKey documents one key of man8env.env.
type envKey struct {
	key, text string
}

// writtenKeys are the keys mbctl writes at pull to match the machine's
// other files; a user changes the machine through mbctl instead.
var writtenKeys = []envKey{
	{man8env.KeyName, "The machine's name."},
	{man8env.KeyTemplate, "The machine's template, how it is attached to the network: `network_isolated` (its own network namespace on the host's bridge), `macvlan` (IPv4 and IPv6 from the LAN on its macvlan mv-UPLINK, the Yggdrasil address alone on host0) or `host_network` (the host's network: man8s-init sets up nothing)."},
	{man8env.KeyYggAddress, "The machine's Yggdrasil address, derived from its name and the host's subnet; man8s-init adds it to the machine's interface (host0). Absent on a `host_network` machine, which has no address of its own."},
	{man8env.KeyImageURL, "The image reference the machine follows (`machines upgrade`, auto-update)."},
	{man8env.KeyDigest, "The digest of the image the root file system was made from."},
	{man8env.KeyArgs, "The app's command line: the image's Entrypoint and Cmd (or `machines pull --entrypoint`, `--cmd`), quoted as a shell would."},
	{man8env.KeyUser, "The user (and group) the app runs as: the image's User."},
	{man8env.KeyInitMode, "`supervise` (nspawn's stub is PID 1, man8s-init PID 2 supervises the app) or `exec-pid1` (man8s-init sets up the network and execs the image's own init)."},
	{man8env.KeyVersion, "The mbctl that made the machine."},
	{man8env.KeyCreatedAt, "When the machine was made (RFC 3339)."},
	{man8env.KeyStrict, "`yes` on a strict machine, whose root is the image's, shared read-only."},
	{man8env.KeyExposedPorts, "The image's ExposedPorts (`80/tcp,53/udp`), which man8s-init's port forwarder serves on the Yggdrasil and ULA addresses."},
}

// userKeyDocs document man8env.UserKeys: the settings a user adds.
var userKeyDocs = map[string]string{
	man8env.KeyStopSignal:             "The signal that stops the app: the image's StopSignal, else SIGTERM.",
	man8env.KeyStopTimeout:            "How long the app has to exit after its stop signal before it is killed (10 s).",
	man8env.KeyDrainTimeout:           "How long, after the app exited, man8s-init waits for the TCP data still queued in its sockets (5 s; `0`: no wait; supervise mode).",
	man8env.KeyWaitFor:                "Targets that must answer before the app starts, separated by commas or spaces: `tcp://host:port`, `http(s)://host[:port]/path`, `file:///path`, `ping://host`.",
	man8env.KeyWaitTimeout:            "How long man8s-init waits for MAN8S_WAIT_FOR (300 s).",
	man8env.KeyLink:                   "The interface man8s-init takes IPv4 and IPv6 on (host0; on a `macvlan` machine its macvlan, mv-UPLINK).",
	man8env.KeyCheck:                  "`warn`, `strict` or `off` (warn): what a failed network check does.",
	man8env.KeyIPv6:                   "`required` or `optional` (required): whether the machine must get IPv6, a SLAAC address with a default route. With `optional` its absence is no failure: man8s-init waits briefly, takes an address without default route at once, and its check reports `ipv6 absent (optional)`. `mbctl machines pull` writes `optional`, below a comment saying why, on a host without IPv6 uplink (no IPv6 default route, or `network.ipv6_uplink = no`), unless `--env` gives MAN8S_IPV6; there the machine still has its ULA address and Yggdrasil.",
	man8env.KeyYggTable:               "The routing table of the Yggdrasil route (199).",
	man8env.KeyYggPriority:            "The priority of the Yggdrasil routing rule (100).",
	man8env.KeyCheckDNS:               "A name that must resolve before the app starts.",
	man8env.KeyDHCPTimeout:            "How long man8s-init waits for a DHCPv4 lease (30 s).",
	man8env.KeyIPv6Timeout:            "How long man8s-init waits for IPv6 (30 s, 1 s when optional).",
	man8env.KeyResolvConf:             "The resolv.conf man8s-init writes (/etc/resolv.conf).",
	man8env.KeyAutoUpdate:             "`registry`: `mbctl machines auto-update` upgrades the machine when its tag moves (off when empty or absent). Read by mbctl, not man8s-init.",
	man8env.KeyReady:                  "When the app is ready, reported to systemd as READY=1: the MAN8S_WAIT_FOR targets, `cmd:COMMAND` (exits 0), or `started`.",
	man8env.KeyReadyTimeout:           "How long the app has to become ready before the machine is stopped (80 s).",
	man8env.KeyHealth:                 "The health check after ready, in MAN8S_READY's forms; else the image's HEALTHCHECK.",
	man8env.KeyOnUnhealthy:            "`none`, `restart` or `stop` (none): what follows when the machine turns unhealthy.",
	man8env.KeyHealthcheck:            "The image's HEALTHCHECK: `CMD-SHELL command`, `CMD argv...` or `NONE`.",
	man8env.KeyHealthcheckInterval:    "The HEALTHCHECK's interval (30 s).",
	man8env.KeyHealthcheckTimeout:     "The HEALTHCHECK's timeout (30 s).",
	man8env.KeyHealthcheckStartPeriod: "The HEALTHCHECK's start period (0).",
	man8env.KeyHealthcheckRetries:     "Failures in a row that make the machine unhealthy (3).",
	man8env.KeyForwardPorts:           "More ports to forward from the Yggdrasil and ULA addresses to an app listening on IPv4 only (`8000,9000/udp`); `off` turns the forwarder off.",
	man8env.KeyForwardProxyProtocol:   "`1`: the forwarder sends a PROXY protocol v2 header, so the app sees the client's address (0).",
}

// envPage is man8env.env(5).
func envPage() (string, error) {
	var b bytes.Buffer
	b.WriteString("# NAME\nman8env.env \\- a machine's environment: the app's variables and man8s-init's settings\n\n")
	section(&b, "SYNOPSIS", "`/var/lib/man8machine_configs/NAME/man8env.env` (`paths.configs` in **mbctl.toml(5)**), bound into the machine at `"+man8env.EnvPath+"`")
	section(&b, "DESCRIPTION", `
One `+"`KEY=VALUE`"+` per line, taken literally: no quotes, no `+"`$`"+` expansion, no
`+"`export`"+`. Lines starting with `+"`#`"+` are comments; comments, order and repeated keys
survive every change mbctl makes. `+"`machines pull`"+` writes the file: Man8S's own keys
first, then the image's ENV, then `+"`--env-file`"+` lines and `+"`--env`"+` flags. Every key
outside MAN8S_ is the app's: man8s-init hands it to the app. The file is yours to edit;
`+"`mbctl machines check NAME`"+` names a line that would not do what it looks like.

Durations are seconds (`+"`30`"+`) or Go durations (`+"`1.5s`"+`, `+"`5m`"+`); the default
is in parentheses.`)
	b.WriteString("# KEYS WRITTEN BY MBCTL\nmbctl writes these at pull to match the machine's other files; `machines pull --env` refuses them.\n\n")
	for _, k := range writtenKeys {
		item(&b, k.key, k.text)
	}
	b.WriteString("# SETTINGS\nKeys a user may add, by hand or with `machines pull --env`; MAN8S_STOP_SIGNAL and MAN8S_HEALTHCHECK* come from the image and are yours to change.\n\n")
	for _, k := range man8env.UserKeys() {
		text, ok := userKeyDocs[k]
		if !ok {
			return "", fmt.Errorf("%s is a setting users may give (man8env.UserKeys) without a description in internal/cli/manual", k)
		}
		item(&b, k, text)
	}
	b.WriteString("# EXAMPLE\n```\n" + strings.TrimSpace(`
# Man8S, written by mbctl; man8s-init reads them.
MAN8S_CONTAINER_NAME=db
MAN8S_OCI_IMAGE_URL=docker.io/library/postgres:17
MAN8S_APPLICATION_ARGS=docker-entrypoint.sh postgres
MAN8S_STOP_SIGNAL=SIGINT
MAN8S_STOP_TIMEOUT=60
MAN8S_AUTO_UPDATE=registry

# Environment of the image.
PGDATA=/var/lib/postgresql/data
POSTGRES_DB=app`) + "\n```\n\n")
	section(&b, "SEE ALSO", "**mbctl-machines-pull(1)**, **mbctl-machines-check(1)**, **mbctl-machines-secret(1)**, **man8s.nspawn(5)**, **mbctl.toml(5)**")
	return b.String(), nil
}

// settingsKeys are the keys of container.nspawn that mbctl writes, by
// section, and what mbctl means by them.
var settingsKeys = []struct{ section, key, text string }{
	{"Exec", "Boot", "`no`: nspawn runs man8s-init, not an OS's init."},
	{"Exec", "ProcessTwo", "`yes` in supervise mode: nspawn's stub init is PID 1 and man8s-init, as PID 2, supervises the app."},
	{"Exec", "NotifyReady", "`yes`: systemd counts the machine as started when man8s-init says the app is ready."},
	{"Exec", "KillSignal", "The signal nspawn sends PID 1 to stop the machine (SIGRTMIN+3 in supervise mode)."},
	{"Exec", "Parameters", "`" + man8env.InitPath + "`, the init mbctl installed into the root file system."},
	{"Exec", "ResolvConf", "How the machine gets /etc/resolv.conf (`copy-stub`; `copy-host` for `host_network`, whose machine uses the host's resolver as it is)."},
	{"Exec", "Timezone", "`copy`: the host's time zone."},
	{"Exec", "LinkJournal", "`no`."},
	{"Exec", "PrivateUsers", "`pick`: the machine runs in a user namespace of its own."},
	{"Exec", "Environment", "The image's PATH, LANG and HOME; its other variables are in man8env.env(5)."},
	{"Exec", "WorkingDirectory", "The image's WorkingDir (/)."},
	{"Network", "MACVLAN", "Template `macvlan`: the host's uplink (`network.uplink` in mbctl.toml(5), `machines pull --uplink`); the machine gets a macvlan of it, mv-UPLINK, on which man8s-init takes IPv4 from the LAN's DHCP and IPv6 by SLAAC from the LAN's router."},
	{"Network", "VirtualEthernet", "`yes`: a veth pair, configured by man8s-init inside as host0 (on a `macvlan` machine with the Yggdrasil address only: no DHCP, `accept_ra=0`). `no` for `host_network`: the machine shares the host's network namespace (this also overrides the `--network-veth` of systemd-nspawn@.service)."},
	{"Network", "Bridge", "The host's bridge (`network.bridge` in mbctl.toml(5)), which `mbctl host setup` creates; none for `host_network`."},
	{"Network", "Port", "`tcp:HOSTPORT:PORT` (or `udp:`), one line per port published on the host (`machines pull --publish`, `mbctl machines publish`, `unpublish`). When the machine starts, nspawn adds a DNAT rule on the host: connections to HOSTPORT on any of the host's addresses except loopback go to PORT of the machine, over IPv4 and IPv6. Not reachable on 127.0.0.1 or [::1]. Yours: upgrades keep the lines, `machines clone` does not copy them."},
	{"Files", "ReadOnly", "`yes` on a strict machine."},
	{"Files", "PrivateUsersOwnership", "`map`: files keep their owners through an idmapped mount."},
	{"Files", "Bind", "man8env.env at " + man8env.EnvPath + ", the image's volumes (data volumes in `paths.storage`, config volumes in the config dir), and on a strict machine its resolv.conf; with the `idmap` option."},
	{"Files", "BindReadOnly", "On a strict `host_network` machine: the host's /etc/resolv.conf."},
	{"Files", "TemporaryFileSystem", "Scratch space on a strict machine (added by the user)."},
}

// settingsPage is man8s.nspawn(5).
func settingsPage() (string, error) {
	var b bytes.Buffer
	b.WriteString("# NAME\nman8s.nspawn \\- the systemd-nspawn settings file of a Man8S machine\n\n")
	section(&b, "SYNOPSIS", "`/var/lib/man8machine_configs/NAME/container.nspawn`, linked from `/etc/systemd/nspawn/NAME.nspawn` (`paths.configs`, `paths.nspawn` in **mbctl.toml(5)**)")
	section(&b, "DESCRIPTION", `
A **systemd.nspawn(5)** settings file, which `+"`machines pull`"+` writes from the image and the
host and systemd-nspawn reads with full trust. It is yours to edit: comments go on lines of
their own (systemd reads `+"`Key=value # text`"+` as the value), and `+"`machines upgrade`"+`
keeps every value you changed, showing each change as a diff first. Any key of
systemd.nspawn(5) may be added (resource limits, more `+"`Bind=`"+`); mbctl writes these:`)
	current := ""
	for _, k := range settingsKeys {
		if k.section != current {
			current = k.section
			fmt.Fprintf(&b, "# [%s]\n", current)
		}
		item(&b, k.key+"=", k.text)
	}
	section(&b, "SEE ALSO", "**systemd.nspawn(5)**, **mbctl-machines-pull(1)**, **mbctl-machines-upgrade(1)**, **man8env.env(5)**, **mbctl.toml(5)**")
	return b.String(), nil
}
