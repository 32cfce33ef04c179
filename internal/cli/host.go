package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/hostcheck"
	"github.com/man8s/mbctl/internal/host/hostsetup"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

func newHostCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("host", "Check and prepare this host for Man8S",
		`A Man8S host runs systemd-networkd with the machines' bridge and Yggdrasil,
whose subnet gives every machine its stable address. 'mbctl host setup' writes
the bridge's files; 'mbctl host check' says what is still missing.`)
	cmd.AddCommand(NewCmdHostCheck(f, nil), NewCmdHostSetup(f, nil), NewCmdHostClean(f, nil))
	return cmd
}

// hostCheckReport is the --json form of host check.
type hostCheckReport struct {
	OK     bool               `json:"ok"`
	Failed int                `json:"failed"`
	Checks []hostcheck.Result `json:"checks"`
}

// HostCheckOptions are the inputs of `host check`.
type HostCheckOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Probes returns the probes of the host for a configuration, and how to
	// release them (hostcheck.Default); tests fake the host with it.
	Probes func(config.Config) (hostcheck.Probes, func() error, error)

	JSON bool
}

// NewCmdHostCheck builds `host check`; runF, if not nil, replaces
// hostCheckRun (tests).
func NewCmdHostCheck(f *Factory, runF func(context.Context, *HostCheckOptions) error) *cobra.Command {
	opts := &HostCheckOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Probes: hostcheck.Default}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check every prerequisite and say how to fix what is missing",
		Long: `Check what Man8S machines need on this host, one line each: systemd-nspawn
and its version, user namespaces, idmapped mounts (probed on the filesystems
of paths.configs and paths.storage), Yggdrasil and its subnet, the bridge
(network.bridge) with its Yggdrasil gateway and ULA addresses, the uplink
(the IPv4 and the IPv6 default route, one not onto the bridge), IP
forwarding, systemd-networkd, a static busybox, the gzip engine and the
writable directories. Nothing on the host is changed.

✓ ok: passed; ! warn: works but needs attention; ✗ fail: machines will not
work until it is fixed; - absent: something optional this host does not
have, which is no problem to fix. Every ! and ✗ says how to fix it.

An IPv4-only host (no IPv6 default route, or network.ipv6_uplink = no)
reports "ipv6 uplink" as absent: its machines still get ULA addresses
(fc00::/64) and reach each other over them, Yggdrasil runs over IPv4, and
'mbctl machines pull' gives new machines MAN8S_IPV6=optional. If the bridge's
router advertisements do not fit the uplink (written by 'mbctl host setup'
before the host gained or lost IPv6), the line is a warning: run setup
again.

The exit status is 1 if a check failed (warn and absent do not count). Run
as root: some probes need it. --json gives each check's status as "ok",
"warn", "fail" or "absent".`,
		Example: `  $ sudo mbctl host check
  ✓ systemd-nspawn: /usr/bin/systemd-nspawn, systemd 252.39-1~deb12u2
  ✗ bridge srvgrp0: srvgrp0 does not exist; fix: run ` + "`mbctl host setup`" + ` ...
  ✓ ipv4 uplink: default route via 192.0.2.1 dev eth0
  - ipv6 uplink: no IPv6 default route (other than onto srvgrp0): no IPv6 to the internet. ...

  # the failed checks and their fixes
  sudo mbctl host check --json | jq '.checks[] | select(.status == "fail")'

  # does this host reach the IPv6 internet?
  sudo mbctl host check --json | jq -r '.checks[] | select(.name == "ipv6 uplink") | .status'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return hostCheckRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print ok, failed and the checks (name, status, detail, fix) as JSON")
	return cmd
}

func hostCheckRun(ctx context.Context, opts *HostCheckOptions) error {
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	probes, closeProbes, err := opts.Probes(cfg)
	if err != nil {
		return err
	}
	defer closeProbes()
	results := hostcheck.Run(ctx, cfg, probes)
	failed := hostcheck.Failed(results)
	if opts.JSON {
		err = writeJSON(opts.IO.Out, hostCheckReport{OK: failed == 0, Failed: failed, Checks: results})
	} else {
		err = printChecks(opts.IO.Out, results)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(results))
	}
	return nil
}

func printChecks(w io.Writer, results []hostcheck.Result) error {
	var b bytes.Buffer
	for _, r := range results {
		mark := map[hostcheck.Status]string{hostcheck.OK: "✓", hostcheck.Warn: "!", hostcheck.Fail: "✗", hostcheck.Absent: "-"}[r.Status]
		fmt.Fprintf(&b, "%s %s: %s", mark, r.Name, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(&b, "; fix: %s", r.Fix)
		}
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// HostSetupOptions are the inputs of `host setup`.
type HostSetupOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// ProcSys is where the running sysctls are ("/proc/sys"); Networkd
	// finds out whether systemd-networkd runs and reloads it. Tests fake
	// both.
	ProcSys  string
	Networkd hostsetup.Networkd
	// IPv6Uplink decides whether the host has IPv6 to the internet
	// (uplink.DecideHere); tests fake it.
	IPv6Uplink func(mode, bridge string) (uplink.IPv6, error)

	// Bridge is --bridge: "" means network.bridge.
	Bridge   string
	DryRun   bool
	NoReload bool
	JSON     bool
}

// NewCmdHostSetup builds `host setup`; runF, if not nil, replaces
// hostSetupRun (tests).
func NewCmdHostSetup(f *Factory, runF func(context.Context, *HostSetupOptions) error) *cobra.Command {
	opts := &HostSetupOptions{
		IO: f.IO, Config: f.Config, Log: f.Logger(),
		ProcSys: "/proc/sys",
		Networkd: hostsetup.Networkd{
			Running: func(context.Context) (bool, error) {
				pid, err := hostcheck.NetworkdPID("/proc")
				return pid != 0, err
			},
			Reload: networkctlReload,
		},
		IPv6Uplink: uplink.DecideHere,
	}
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Write the bridge's systemd-networkd files and enable forwarding",
		Long: `Write the machines' bridge for systemd-networkd into paths.networkd
(80-man8s-BRIDGE.netdev and .network: DHCPv4 server and NAT, router
advertisements for fc00::/64, and the gateway <ygg subnet>::1 computed from
this host's Yggdrasil subnet) and the forwarding sysctls into paths.sysctl
(99-man8s-forwarding.conf); then turn forwarding on at once and reload
systemd-networkd if it runs.

Forwarding is turned on by writing the two keys of that drop-in to /proc/sys,
not by 'sysctl --system', which would re-apply every drop-in of the host.

On a host without IPv6 uplink (no IPv6 default route other than onto the
bridge, or network.ipv6_uplink = no) the bridge's router advertisements offer
no default route (RouterLifetimeSec=0): machines still get their fc00::/64
address by SLAAC and reach each other over it, but do not send internet-bound
IPv6 to a host that cannot forward it. A notice says so when the bridge's
files change. Run setup again when the host gains IPv6: it writes the default
back.

Running it again changes nothing and says so: a file is written only when its
content differs. --dry-run prints the files and what would change.

With --json: the bridge and subnet, ipv6_uplink (true or false) and
ipv6_uplink_source (probe or config), whether anything changed, each file
(path, action create|update|unchanged, written, the new content and for an
update the diff), each sysctl (key, action, old, new, set), and what became of
systemd-networkd: unchanged (nothing to reload), reloaded, would_reload,
not_running or not_reloaded (--no-reload, or setup failed first).`,
		Example: `  # what would change?
  sudo mbctl host setup --dry-run

  sudo mbctl host setup && sudo mbctl host check

  # a second bridge, reloading systemd-networkd yourself
  sudo mbctl host setup --bridge br1 --no-reload && sudo networkctl reload

  # the files that would be written
  sudo mbctl host setup --dry-run --json | jq -r '.files[] | select(.action != "unchanged") | .path'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("bridge") {
				if err := config.ValidateIfName(opts.Bridge); err != nil {
					return usagef("--bridge: %v", err)
				}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return hostSetupRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Bridge, "bridge", "", "bridge name (default network.bridge)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the files and what would change; change nothing")
	cmd.Flags().BoolVar(&opts.NoReload, "no-reload", false, "leave systemd-networkd alone (reload it yourself)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was (with --dry-run: would be) written and changed as JSON")
	return cmd
}

// What became of systemd-networkd, in `host setup --json`.
const (
	networkdUnchanged   = "unchanged"
	networkdReloaded    = "reloaded"
	networkdWouldReload = "would_reload"
	networkdNotRunning  = "not_running"
	networkdNotReloaded = "not_reloaded"
)

// hostSetupReport is the --json form of `host setup`.
type hostSetupReport struct {
	DryRun       bool   `json:"dry_run"`
	Bridge       string `json:"bridge"`
	Subnet       string `json:"subnet"`
	SubnetSource string `json:"subnet_source"`
	// IPv6Uplink is whether the host has IPv6 to the internet, and
	// IPv6UplinkSource how that was found: "probe" (its IPv6 default
	// route) or "config" (network.ipv6_uplink).
	IPv6Uplink       bool              `json:"ipv6_uplink"`
	IPv6UplinkSource string            `json:"ipv6_uplink_source"`
	Changed          bool              `json:"changed"`
	Files            []hostSetupFile   `json:"files"`
	Sysctls          []hostSetupSysctl `json:"sysctls"`
	Networkd         string            `json:"networkd"`
}

type hostSetupFile struct {
	Path string `json:"path"`
	// Action is create, update or unchanged.
	Action  string `json:"action"`
	Written bool   `json:"written"`
	// Content is what is (or would be) written; Diff, for an update, the
	// lines that change ("-old", "+new").
	Content string `json:"content,omitempty"`
	Diff    string `json:"diff,omitempty"`
}

type hostSetupSysctl struct {
	Key string `json:"key"`
	// Action is update or unchanged.
	Action string `json:"action"`
	Old    string `json:"old"`
	New    string `json:"new"`
	Set    bool   `json:"set"`
}

func hostSetupRun(ctx context.Context, opts *HostSetupOptions) error {
	cfg, origin, err := opts.Config()
	if err != nil {
		return err
	}
	bridge := opts.Bridge
	if bridge == "" {
		bridge = cfg.Network.Bridge
	} else if bridge != cfg.Network.Bridge {
		fmt.Fprintf(opts.IO.ErrOut, "notice: new machines are attached to network.bridge %q; set network.bridge = %q in %s to use %s\n",
			cfg.Network.Bridge, bridge, origin.Path, bridge)
	}
	subnet, source, err := yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix)
	if err != nil {
		return fmt.Errorf("the bridge's gateway needs this host's yggdrasil subnet: %w", err)
	}
	if source == yggadmin.SubnetFromConfig {
		fmt.Fprintf(opts.IO.ErrOut, "notice: yggdrasil at %s is unreachable; using network.ygg_prefix %s\n", cfg.Network.YggAdmin, subnet)
	}
	opts.Log.Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
	v6, err := opts.IPv6Uplink(cfg.Network.IPv6Uplink, bridge)
	if err != nil {
		return fmt.Errorf("looking for this host's IPv6 uplink (or set network.ipv6_uplink to yes or no): %w", err)
	}
	opts.Log.Debug("host ipv6 uplink", "present", v6.Present, "configured", v6.Configured, "route", v6.Route)
	ipv4, err := cfg.BridgeIPv4()
	if err != nil {
		return fmt.Errorf("network.ipv4 in %s: %w", origin.Path, err)
	}
	plan, err := hostsetup.MakePlan(hostsetup.Options{
		Bridge:       bridge,
		Subnet:       subnet,
		IPv4:         ipv4,
		NetworkDir:   cfg.Paths.Networkd,
		SysctlDir:    cfg.Paths.Sysctl,
		ProcSys:      opts.ProcSys,
		NoIPv6Uplink: !v6.Present,
	})
	if err != nil {
		return err
	}
	if !v6.Present && plan.NetworkdChanged() {
		would := ""
		if opts.DryRun {
			would = " would"
		}
		fmt.Fprintf(opts.IO.ErrOut, "notice: this host has no IPv6 uplink (%s): %s's router advertisements%s offer no default route (%s); machines still get their fc00::/64 addresses and Yggdrasil\n",
			v6.Why(), bridge, would, hostsetup.NoDefaultRouter)
	}
	reload := !opts.NoReload
	report := func(res hostsetup.Result, networkd string) error {
		rep := setupReport(plan, res, opts.DryRun, bridge, subnet.String(), source, networkd)
		rep.IPv6Uplink, rep.IPv6UplinkSource = v6.Present, "probe"
		if v6.Configured {
			rep.IPv6UplinkSource = "config"
		}
		return writeJSON(opts.IO.Out, rep)
	}
	if opts.DryRun {
		networkd, runErr := plannedNetworkd(ctx, plan, opts.Networkd.Running, reload)
		if opts.JSON {
			if runErr != nil {
				fmt.Fprintf(opts.IO.ErrOut, "notice: %v\n", runErr)
			}
			return report(hostsetup.Result{}, networkd)
		}
		return printPlan(opts.IO.Out, plan, networkd, runErr)
	}
	if !plan.Changed() {
		if opts.JSON {
			return report(hostsetup.Result{}, networkdUnchanged)
		}
		_, err := fmt.Fprintf(opts.IO.Out, "nothing to change: %s are up to date and forwarding is on\n", joinPaths(plan))
		return err
	}
	res, err := hostsetup.Apply(ctx, plan, opts.Networkd, reload)
	networkd := networkdNotReloaded // --no-reload, or Apply failed first
	switch {
	case res.Reloaded:
		networkd = networkdReloaded
	case res.NetworkdStopped:
		networkd = networkdNotRunning
	case !plan.NetworkdChanged():
		networkd = networkdUnchanged
	}
	if opts.JSON {
		if jerr := report(res, networkd); jerr != nil {
			return errors.Join(jerr, err)
		}
	} else {
		out := opts.IO.Out
		for _, p := range res.Written {
			fmt.Fprintf(out, "wrote %s\n", p)
		}
		for _, s := range plan.Sysctls {
			if slices.Contains(res.Set, s.Key) {
				fmt.Fprintf(out, "set %s = %s\n", s.Key, s.New)
			}
		}
		if res.Reloaded {
			fmt.Fprintln(out, "reloaded systemd-networkd")
		}
	}
	switch {
	case res.NetworkdStopped:
		fmt.Fprintln(opts.IO.ErrOut, "notice: systemd-networkd is not running; start it to create the bridge: systemctl enable --now systemd-networkd")
	case err == nil && opts.NoReload && plan.NetworkdChanged():
		fmt.Fprintln(opts.IO.ErrOut, "notice: systemd-networkd was not reloaded (--no-reload); run `networkctl reload`")
	}
	return err
}

// plannedNetworkd says what setup would do to systemd-networkd: nothing if
// none of its files changes or reload is off, else reload it if it runs.
// An error finding out is returned with networkdNotRunning.
func plannedNetworkd(ctx context.Context, plan *hostsetup.Plan, running func(context.Context) (bool, error), reload bool) (string, error) {
	switch {
	case !plan.NetworkdChanged():
		return networkdUnchanged, nil
	case !reload:
		return networkdNotReloaded, nil
	case running == nil:
		return networkdNotRunning, nil
	}
	up, err := running(ctx)
	if err != nil {
		return networkdNotRunning, fmt.Errorf("cannot tell whether systemd-networkd runs: %w", err)
	}
	if !up {
		return networkdNotRunning, nil
	}
	return networkdWouldReload, nil
}

// setupReport is what `host setup --json` prints: the plan, and with res
// what was done of it.
func setupReport(plan *hostsetup.Plan, res hostsetup.Result, dryRun bool, bridge, subnet, source, networkd string) hostSetupReport {
	rep := hostSetupReport{
		DryRun: dryRun, Bridge: bridge, Subnet: subnet, SubnetSource: source,
		Changed: plan.Changed(), Files: []hostSetupFile{}, Sysctls: []hostSetupSysctl{}, Networkd: networkd,
	}
	for _, f := range plan.Files {
		jf := hostSetupFile{Path: f.Path, Action: f.Action.String(), Written: slices.Contains(res.Written, f.Path)}
		if f.Action != hostsetup.Unchanged {
			jf.Content = string(f.New)
		}
		if f.Action == hostsetup.Update {
			jf.Diff = hostsetup.Diff(f.Old, f.New)
		}
		rep.Files = append(rep.Files, jf)
	}
	for _, s := range plan.Sysctls {
		rep.Sysctls = append(rep.Sysctls, hostSetupSysctl{Key: s.Key, Action: s.Action.String(), Old: s.Old, New: s.New, Set: slices.Contains(res.Set, s.Key)})
	}
	return rep
}

// networkctlReload makes the running networkd read its files again.
func networkctlReload(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "networkctl", "reload").CombinedOutput()
	if err != nil {
		return fmt.Errorf("networkctl reload: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func joinPaths(plan *hostsetup.Plan) string {
	var paths []string
	for _, f := range plan.Files {
		paths = append(paths, f.Path)
	}
	return strings.Join(paths, ", ")
}

// printPlan is --dry-run: every file with what would happen to it, the
// sysctls, and what would become of systemd-networkd (plannedNetworkd).
func printPlan(w io.Writer, plan *hostsetup.Plan, networkd string, runErr error) error {
	var b bytes.Buffer
	for _, f := range plan.Files {
		switch f.Action {
		case hostsetup.Unchanged:
			fmt.Fprintf(&b, "%s is up to date\n", f.Path)
			continue
		case hostsetup.Create:
			fmt.Fprintf(&b, "would create %s:\n", f.Path)
		case hostsetup.Update:
			fmt.Fprintf(&b, "would update %s, changing:\n%s", f.Path, indent(hostsetup.Diff(f.Old, f.New)))
			fmt.Fprintf(&b, "to:\n")
		}
		b.WriteString(indent(string(f.New)))
	}
	for _, s := range plan.Sysctls {
		if s.Action == hostsetup.Unchanged {
			fmt.Fprintf(&b, "%s is %s already\n", s.Key, s.New)
		} else {
			fmt.Fprintf(&b, "would set %s = %s (now %s)\n", s.Key, s.New, s.Old)
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintf(&b, "%v: would reload it if it runs\n", runErr)
	case networkd == networkdWouldReload:
		fmt.Fprintln(&b, "would reload systemd-networkd (networkctl reload)")
	case networkd == networkdNotRunning:
		fmt.Fprintln(&b, "systemd-networkd is not running: start it to create the bridge")
	case networkd == networkdNotReloaded:
		fmt.Fprintln(&b, "would not reload systemd-networkd (--no-reload): run `networkctl reload` after setup")
	}
	if !plan.Changed() {
		fmt.Fprintln(&b, "nothing to change")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}
