package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/guest/health"
)

// CheckStatus is how one check came out.
type CheckStatus string

const (
	// CheckOK: nothing to do.
	CheckOK CheckStatus = "ok"
	// CheckWarn: the machine starts, but something does not do what it
	// looks like it does (an ignored env line, say).
	CheckWarn CheckStatus = "warn"
	// CheckFail: the machine does not start, or not as configured.
	CheckFail CheckStatus = "fail"
)

// CheckResult is one finding of Check.
type CheckResult struct {
	// What names what was checked ("root file system", "settings link").
	What   string      `json:"check"`
	Status CheckStatus `json:"status"`
	Path   string      `json:"path,omitempty"`
	// Detail says what is wrong ("" when all is well).
	Detail string `json:"detail,omitempty"`
	// Fix says what to do about it.
	Fix string `json:"fix,omitempty"`
}

// Check reads machine p's files the way systemd-nspawn and man8s-init will
// and reports, before a start finds out, what would stop the machine or
// make it run otherwise than configured: missing paths and links, a root
// file system nspawn refuses, a missing man8s-init, settings that do not
// parse, bind sources that are gone, env lines that are ignored and env
// values the init refuses. It never changes anything.
func Check(p Paths) []CheckResult {
	var out []CheckResult
	add := func(r CheckResult) { out = append(out, r) }

	add(checkDir("root file system", p.Rootfs,
		fmt.Sprintf("make it again from the config dir: 'mbctl machines rebuild %s'", p.Name)))
	if out[0].Status == CheckOK {
		add(checkDir("root file system /usr", filepath.Join(p.Rootfs, "usr"),
			fmt.Sprintf("systemd-nspawn refuses a tree without /usr: 'mbctl oci man8init %s' makes an empty one", p.Rootfs)))
		add(checkInit(p))
	}
	add(checkDir("config dir", p.ConfigDir, fmt.Sprintf("pull the machine again ('mbctl machines remove %s' first)", p.Name)))

	settings, r := checkSettings(p)
	add(r)
	add(checkLink("nspawn settings link", p.SettingsLink, p.Settings))
	if dir := filepath.Dir(p.SettingsLink); !ReadsSettings(dir) {
		add(CheckResult{What: "nspawn settings dir", Status: CheckWarn, Path: dir,
			Detail: fmt.Sprintf("systemd-nspawn reads settings only from %s", strings.Join(SettingsDirs(), " and ")),
			Fix:    "set paths.nspawn to /etc/systemd/nspawn in mbctl's configuration"})
	}
	add(checkLink("machinectl image link", p.ImageLink, p.Rootfs))
	if settings != nil {
		out = append(out, checkBinds(settings)...)
		out = append(out, checkMacvlan(settings)...)
		out = append(out, checkPorts(p, settings)...)
	}
	out = append(out, checkEnv(p)...)
	return out
}

// Failed reports whether any of rs failed.
func Failed(rs []CheckResult) bool {
	for _, r := range rs {
		if r.Status == CheckFail {
			return true
		}
	}
	return false
}

func checkDir(what, path, fix string) CheckResult {
	r := CheckResult{What: what, Status: CheckOK, Path: path}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail, r.Fix = CheckFail, "missing", fix
	case err != nil:
		r.Status, r.Detail = CheckFail, err.Error()
	case !fi.IsDir():
		r.Status, r.Detail, r.Fix = CheckFail, "not a directory", fix
	}
	return r
}

// checkInit checks that man8s-init is installed in the machine.
func checkInit(p Paths) CheckResult {
	path := filepath.Join(p.Rootfs, man8env.InitPath)
	r := CheckResult{What: "man8s-init", Status: CheckOK, Path: path}
	fix := fmt.Sprintf("install it again: 'mbctl oci man8init %s'", p.Rootfs)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail, r.Fix = CheckFail, "missing", fix
	case err != nil:
		r.Status, r.Detail = CheckFail, err.Error()
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		r.Status, r.Detail, r.Fix = CheckFail, fmt.Sprintf("not an executable file (%s)", fi.Mode()), fix
	}
	return r
}

func checkSettings(p Paths) (*unitfile.File, CheckResult) {
	r := CheckResult{What: "settings", Status: CheckOK, Path: p.Settings}
	f, err := unitfile.ReadFile(p.Settings)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail = CheckFail, "missing"
		r.Fix = fmt.Sprintf("pull the machine again over its kept data: 'mbctl machines remove --keep-data %s', then 'mbctl machines pull --adopt IMAGE %s'", p.Name, p.Name)
		return nil, r
	case err != nil:
		r.Status, r.Detail, r.Fix = CheckFail, err.Error(), "correct the line it names"
		return nil, r
	}
	return f, r
}

// checkPorts checks the published ports (Port=): each must parse, a host
// port and protocol must be given once, and the machine must have its own
// network, without which systemd-nspawn refuses to start ("Cannot use
// --port= without private networking").
func checkPorts(p Paths, f *unitfile.File) []CheckResult {
	values := f.GetAll("Network", "Port")
	if len(values) == 0 {
		return nil
	}
	var out []CheckResult
	lines, errs := portLines(f)
	for _, err := range errs {
		out = append(out, CheckResult{What: "published port", Status: CheckWarn, Path: p.Settings, Detail: err.Error() + "; systemd-nspawn ignores the line",
			Fix: "write it as Port=tcp:HOSTPORT:PORT (or udp:), or 'mbctl machines publish " + p.Name + " HOSTPORT:PORT'"})
	}
	seen := map[string]string{}
	for _, l := range lines {
		if first, ok := seen[l.port.HostKey()]; ok {
			out = append(out, CheckResult{What: "published port " + l.port.HostKey(), Status: CheckWarn, Path: p.Settings,
				Detail: fmt.Sprintf("Port=%s and Port=%s publish one host port: systemd-nspawn takes the first and ignores the other", first, l.value),
				Fix:    fmt.Sprintf("remove one ('mbctl machines unpublish %s %s' removes both)", p.Name, l.port.HostKey())})
			continue
		}
		seen[l.port.HostKey()] = l.value
	}
	if !privateNetwork(f) {
		out = append(out, CheckResult{What: "published ports", Status: CheckFail, Path: p.Settings,
			Detail: "Port= without a network of the machine's own: systemd-nspawn refuses to start (\"Cannot use --port= without private networking\")",
			Fix:    fmt.Sprintf("set VirtualEthernet=yes in [Network], or 'mbctl machines unpublish %s --all'", p.Name)})
	}
	if len(out) == 0 {
		var ps []string
		for _, l := range lines {
			ps = append(ps, l.port.String())
		}
		out = append(out, CheckResult{What: "published ports", Status: CheckOK, Path: p.Settings, Detail: strings.Join(ps, ", ")})
	}
	return out
}

// privateNetwork reports whether settings f give the machine a network
// namespace of its own, as systemd-nspawn reads [Network].
func privateNetwork(f *unitfile.File) bool {
	for _, k := range []string{"Private", "VirtualEthernet"} {
		if v, ok := f.Get("Network", k); ok {
			if b, err := parseBool(v); err == nil && b {
				return true
			}
		}
	}
	for _, k := range []string{"Interface", "MACVLAN", "IPVLAN", "Bridge", "Zone", "VirtualEthernetExtra"} {
		if v, ok := f.Get("Network", k); ok && strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// parseBool reads a boolean as systemd does.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", v)
}

// checkLink checks that link is a symlink to target.
func checkLink(what, link, target string) CheckResult {
	r := CheckResult{What: what, Status: CheckOK, Path: link}
	fix := fmt.Sprintf("ln -sfn %s %s", target, link)
	dest, err := os.Readlink(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail, r.Fix = CheckFail, "missing", fix
	case err != nil:
		r.Status, r.Detail, r.Fix = CheckFail, "not a symlink", fix
	case filepath.Clean(dest) != filepath.Clean(target):
		r.Status, r.Detail, r.Fix = CheckFail, fmt.Sprintf("points to %s, not %s", dest, target), fix
	}
	return r
}

// checkBinds checks that every bind source exists ("-SRC" may be missing,
// "+SRC" is inside the machine).
func checkBinds(f *unitfile.File) []CheckResult {
	var out []CheckResult
	for _, key := range []string{"Bind", "BindReadOnly"} {
		for _, v := range f.GetAll("Files", key) {
			host, container, err := ParseBind(v)
			what := "bind " + container
			if key == "BindReadOnly" {
				what = "read-only bind " + container
			}
			r := CheckResult{What: what, Status: CheckOK, Path: host}
			switch {
			case err != nil:
				r.What, r.Status, r.Detail = key+"="+v, CheckFail, err.Error()
			case host == "" || strings.HasPrefix(v, "-"):
				continue
			default:
				if _, err := os.Stat(host); errors.Is(err, fs.ErrNotExist) {
					r.Status, r.Detail = CheckFail, "bind source missing"
					r.Fix = fmt.Sprintf("create it (mkdir %s) or restore it from a backup; systemd-nspawn refuses to start without it", host)
				} else if err != nil {
					r.Status, r.Detail = CheckFail, err.Error()
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// checkMacvlan checks that the uplinks MACVLAN= names exist on the host
// (the macvlan template): nspawn refuses to start without them.
func checkMacvlan(f *unitfile.File) []CheckResult {
	var out []CheckResult
	for _, v := range f.GetAll("Network", "MACVLAN") {
		for _, name := range strings.Fields(v) {
			r := CheckResult{What: "macvlan uplink " + name, Status: CheckOK}
			if _, err := net.InterfaceByName(name); err != nil {
				r.Status, r.Detail = CheckFail, fmt.Sprintf("the host has no interface %s: %v", name, err)
				r.Fix = "set MACVLAN= in container.nspawn to the host's interface on the LAN ('ip link' lists them)"
			}
			out = append(out, r)
		}
	}
	return out
}

// checkEnv checks the env file as man8s-init reads it: lines it ignores,
// and values of its own keys it would refuse at start.
func checkEnv(p Paths) []CheckResult {
	r := CheckResult{What: "environment", Status: CheckOK, Path: p.Env}
	f, err := envfile.ReadFile(p.Env)
	if err != nil {
		r.Status, r.Detail = CheckFail, err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			r.Detail = "missing"
			r.Fix = fmt.Sprintf("pull the machine again over its kept data: 'mbctl machines remove --keep-data %s', then 'mbctl machines pull --adopt IMAGE %s'", p.Name, p.Name)
		}
		return []CheckResult{r}
	}
	out := []CheckResult{r}
	for _, pr := range f.Problems() {
		out = append(out, CheckResult{What: "environment", Status: CheckWarn, Path: p.Env, Detail: pr.String()})
	}
	vars := f.Map()
	bad := func(key string, err error) {
		out = append(out, CheckResult{What: "environment " + key, Status: CheckFail, Path: p.Env,
			Detail: err.Error(), Fix: fmt.Sprintf("correct %s in %s; man8s-init refuses to start with it", key, p.Env)})
	}
	if v := strings.TrimSpace(vars[man8env.KeyInitMode]); v != "" && v != string(man8env.InitSupervise) && v != string(man8env.InitExecPID1) {
		bad(man8env.KeyInitMode, fmt.Errorf("%q: want %s or %s", v, man8env.InitSupervise, man8env.InitExecPID1))
	}
	if v := vars[man8env.KeyStopSignal]; v != "" {
		if _, err := signals.Parse(v); err != nil {
			bad(man8env.KeyStopSignal, err)
		}
	}
	for _, key := range []string{man8env.KeyStopTimeout, man8env.KeyWaitTimeout, man8env.KeyDHCPTimeout, man8env.KeyDrainTimeout} {
		if key == man8env.KeyDrainTimeout && (strings.TrimSpace(vars[key]) == "0" || strings.TrimSpace(vars[key]) == "0s") {
			continue // 0 turns the drain off
		}
		if _, err := envfile.Duration(vars, key, 0); err != nil {
			bad(key, err)
		}
	}
	if v, ok := vars[man8env.KeyArgs]; ok {
		if _, err := appargs.Words(v); err != nil {
			bad(man8env.KeyArgs, err)
		}
	}
	if _, err := health.ParseConfig(vars, exists(p.Rootfs, appargs.ShellPath)); err != nil {
		out = append(out, CheckResult{What: "environment readiness and health", Status: CheckFail, Path: p.Env,
			Detail: oneLine(err), Fix: fmt.Sprintf("correct the MAN8S_READY, MAN8S_HEALTH* and MAN8S_ON_UNHEALTHY keys in %s; man8s-init refuses to start with them", p.Env)})
	}
	if _, err := man8env.ParsePorts(vars[man8env.KeyExposedPorts]); err != nil {
		bad(man8env.KeyExposedPorts, err)
	}
	if _, _, err := man8env.ParseForwardPorts(vars[man8env.KeyForwardPorts]); err != nil {
		bad(man8env.KeyForwardPorts, err)
	}
	if _, err := man8env.ParseProxyProtocol(vars[man8env.KeyForwardProxyProtocol]); err != nil {
		bad(man8env.KeyForwardProxyProtocol, err)
	}
	if _, err := man8env.ParseAutoUpdate(vars[man8env.KeyAutoUpdate]); err != nil {
		// mbctl's own key: the machine starts, auto-update fails on it.
		out = append(out, CheckResult{What: "environment " + man8env.KeyAutoUpdate, Status: CheckWarn, Path: p.Env,
			Detail: err.Error(), Fix: fmt.Sprintf("correct %s in %s; 'mbctl machines auto-update' fails on this machine until then", man8env.KeyAutoUpdate, p.Env)})
	}
	if v := strings.TrimSpace(vars[man8env.KeyYggAddress]); v != "" {
		out = append(out, checkYggAddress(p.Name, v, p.Env))
	}
	return out
}

// checkYggAddress checks that the machine's address has the suffix its
// name gives: a config dir copied under another name keeps the old one.
func checkYggAddress(name, value, path string) CheckResult {
	r := CheckResult{What: "environment " + man8env.KeyYggAddress, Status: CheckOK, Path: path}
	addr, err := netip.ParseAddr(value)
	if err != nil {
		r.Status, r.Detail = CheckFail, err.Error()
		return r
	}
	want := yggaddr.Suffix(name).As16()
	got := addr.As16()
	// The suffix is the low 64 bits of a /64 (Yggdrasil hands out /64s).
	if [8]byte(got[8:]) != [8]byte(want[8:]) {
		r.Status = CheckFail
		r.Detail = fmt.Sprintf("%s is not machine %s's address (its suffix belongs to another name)", value, name)
		r.Fix = fmt.Sprintf("set it to the output of 'mbctl address get %s'", name)
	}
	return r
}

// oneLine joins the lines of a joined error.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
