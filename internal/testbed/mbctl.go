package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MbctlConfig returns an mbctl.toml whose every path lies under dir, with
// extra TOML appended. nspawnDir, if not empty, replaces the nspawn dir.
func MbctlConfig(dir, nspawnDir, extra string) string {
	var b strings.Builder
	b.WriteString("[paths]\n")
	for _, k := range []string{"machines", "configs", "storage", "nspawn", "machinectl", "cache", "scratch", "systemd_units"} {
		p := filepath.Join(dir, k)
		if k == "nspawn" && nspawnDir != "" {
			p = nspawnDir
		}
		fmt.Fprintf(&b, "%s = %q\n", k, p)
	}
	b.WriteString(extra)
	return b.String()
}

// settingsDir is where systemd-nspawn reads NAME.nspawn with full trust.
const settingsDir = "/run/systemd/nspawn"

// Mbctl runs mbctl's machine verbs against a testbed host: every path in
// Dir, the host's yggdrasil, and systemd-nspawn's settings dir
// /run/systemd/nspawn replaced, in a private mount namespace per command,
// by Dir/nspawn, so nspawn reads the machines' settings without the real
// /run/systemd/nspawn being touched.
type Mbctl struct {
	Host *Host
	// Bin is the mbctl binary, Dir the state dir, Config its config file.
	Bin, Dir, Config string
}

// NewMbctl writes the configuration for mbctl on h under dir (extra TOML
// appended, into [network] unless it starts a table). It sets
// network.ipv6_uplink = "yes" unless extra sets it: Command runs a pull in
// the caller's network namespace, whose uplink must not decide whether the
// testbed's machines get MAN8S_IPV6=optional.
func NewMbctl(h *Host, bin, dir, extra string) (*Mbctl, error) {
	m := &Mbctl{Host: h, Bin: bin, Dir: dir, Config: filepath.Join(dir, "mbctl.toml")}
	if !strings.Contains(extra, "ipv6_uplink") {
		extra = "ipv6_uplink = \"yes\"\n" + extra
	}
	conf := MbctlConfig(dir, settingsDir, fmt.Sprintf("\n[network]\nygg_admin = %q\n%s", h.YggAdmin, extra))
	if err := os.MkdirAll(filepath.Join(dir, "nspawn"), 0o755); err != nil {
		return nil, err
	}
	return m, os.WriteFile(m.Config, []byte(conf), 0o644)
}

// Command runs mbctl args in the host's network namespace. A pull, a
// clone, an upgrade, a rebuild or an auto-update runs in the root
// namespace instead, where test registries listen on loopback.
func (m *Mbctl) Command(ctx context.Context, args ...string) *exec.Cmd {
	argv := NspawnDirArgs(filepath.Join(m.Dir, "nspawn"), append([]string{m.Bin, "--config", m.Config}, args...)...)
	if len(args) > 1 && (args[1] == "pull" || args[1] == "clone" || args[1] == "upgrade" || args[1] == "rebuild" || args[1] == "auto-update") {
		return exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	return m.Host.Command(ctx, argv[0], argv[1:]...)
}

// NspawnDirArgs returns the command line that runs argv in a private mount
// namespace where dir is bind-mounted on /run/systemd/nspawn, the settings
// directory that systemd-nspawn trusts: tests give machines settings files
// without writing into the host's own directory.
func NspawnDirArgs(dir string, argv ...string) []string {
	// mkdir: the mount point; an empty dir changes nothing nspawn sees.
	script := `mkdir -p ` + settingsDir + ` && mount --bind "$0" ` + settingsDir + ` && exec "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, dir}, argv...)
}
