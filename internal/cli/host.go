package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/hostcheck"
	"github.com/man8s/mbctl/internal/host/hostsetup"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

func newHostCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("host", "Check and prepare this host for Man8S",
		`A Man8S host runs systemd-networkd with the machines' bridge and Yggdrasil,
whose subnet gives every machine its stable address. 'mbctl host setup' writes
the bridge's files; 'mbctl host check' says what is still missing.`)
	cmd.AddCommand(newHostCheckCmd(f), newHostSetupCmd(f))
	return cmd
}

// hostCheckReport is the --json form of host check.
type hostCheckReport struct {
	OK     bool               `json:"ok"`
	Failed int                `json:"failed"`
	Checks []hostcheck.Result `json:"checks"`
}

type hostCheckOptions struct {
	json bool
	// probes returns the host's probes; tests replace it.
	probes func(config.Config) (hostcheck.Probes, func() error, error)
}

func newHostCheckCmd(f *Factory) *cobra.Command {
	o := hostCheckOptions{probes: hostcheck.Default}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check every prerequisite and say how to fix what is missing",
		Long: `Check what Man8S machines need on this host, one line each: systemd-nspawn
and its version, user namespaces, idmapped mounts (probed on the filesystems
of paths.configs and paths.storage), Yggdrasil and its subnet, the bridge
(network.bridge) with its Yggdrasil gateway and ULA addresses, IP forwarding,
systemd-networkd, a static busybox and the writable directories.

✓ passed, ! works but needs attention, ✗ failed; every ! and ✗ says how to
fix it. The exit status is 1 if a check failed. Run as root: some probes
need it.`,
		Example: `  $ sudo mbctl host check
  ✓ systemd-nspawn: /usr/bin/systemd-nspawn, systemd 252.39-1~deb12u2
  ✗ bridge srvgrp0: srvgrp0 does not exist (fix: run ` + "`mbctl host setup`" + ` ...)`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return hostCheck(cmd.Context(), f, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the checks as JSON")
	return cmd
}

func hostCheck(ctx context.Context, f *Factory, o hostCheckOptions) error {
	cfg, _, err := f.Config()
	if err != nil {
		return err
	}
	probes, closeProbes, err := o.probes(cfg)
	if err != nil {
		return err
	}
	defer closeProbes()
	results := hostcheck.Run(ctx, cfg, probes)
	failed := hostcheck.Failed(results)
	if o.json {
		err = writeJSON(f.IO.Out, hostCheckReport{OK: failed == 0, Failed: failed, Checks: results})
	} else {
		err = printChecks(f.IO.Out, results)
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
		mark := map[hostcheck.Status]string{hostcheck.OK: "✓", hostcheck.Warn: "!", hostcheck.Fail: "✗"}[r.Status]
		fmt.Fprintf(&b, "%s %s: %s", mark, r.Name, r.Detail)
		if r.Fix != "" {
			fmt.Fprintf(&b, "; fix: %s", r.Fix)
		}
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

type hostSetupOptions struct {
	bridge   string
	dryRun   bool
	noReload bool
	// procSys and networkd are the host's; tests replace them.
	procSys  string
	networkd hostsetup.Networkd
}

func newHostSetupCmd(f *Factory) *cobra.Command {
	o := hostSetupOptions{
		procSys: "/proc/sys",
		networkd: hostsetup.Networkd{
			Running: func(context.Context) (bool, error) {
				pid, err := hostcheck.NetworkdPID("/proc")
				return pid != 0, err
			},
			Reload: networkctlReload,
		},
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

Running it again changes nothing and says so: a file is written only when its
content differs. --dry-run prints the files and what would change.`,
		Example: `  # what would change?
  sudo mbctl host setup --dry-run

  sudo mbctl host setup && sudo mbctl host check`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("bridge") {
				if err := config.ValidateIfName(o.bridge); err != nil {
					return usagef("--bridge: %v", err)
				}
			}
			return hostSetup(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.bridge, "bridge", "", "bridge name (default network.bridge)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the files and what would change; change nothing")
	cmd.Flags().BoolVar(&o.noReload, "no-reload", false, "leave systemd-networkd alone (reload it yourself)")
	return cmd
}

func hostSetup(ctx context.Context, f *Factory, o hostSetupOptions) error {
	cfg, origin, err := f.Config()
	if err != nil {
		return err
	}
	if o.bridge == "" {
		o.bridge = cfg.Network.Bridge
	} else if o.bridge != cfg.Network.Bridge {
		fmt.Fprintf(f.IO.ErrOut, "notice: new machines are attached to network.bridge %q; set network.bridge = %q in %s to use %s\n",
			cfg.Network.Bridge, o.bridge, origin.Path, o.bridge)
	}
	subnet, source, err := yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix)
	if err != nil {
		return fmt.Errorf("the bridge's gateway needs this host's yggdrasil subnet: %w", err)
	}
	if source == yggadmin.SubnetFromConfig {
		fmt.Fprintf(f.IO.ErrOut, "notice: yggdrasil at %s is unreachable; using network.ygg_prefix %s\n", cfg.Network.YggAdmin, subnet)
	}
	f.Logger().Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
	plan, err := hostsetup.MakePlan(hostsetup.Options{
		Bridge:     o.bridge,
		Subnet:     subnet,
		NetworkDir: cfg.Paths.Networkd,
		SysctlDir:  cfg.Paths.Sysctl,
		ProcSys:    o.procSys,
	})
	if err != nil {
		return err
	}
	if o.dryRun {
		return printPlan(ctx, f.IO.Out, plan, o.networkd.Running, !o.noReload)
	}
	if !plan.Changed() {
		_, err := fmt.Fprintf(f.IO.Out, "nothing to change: %s are up to date and forwarding is on\n", joinPaths(plan))
		return err
	}
	res, err := hostsetup.Apply(ctx, plan, o.networkd, !o.noReload)
	out := f.IO.Out
	for _, p := range res.Written {
		fmt.Fprintf(out, "wrote %s\n", p)
	}
	for _, s := range plan.Sysctls {
		if slices.Contains(res.Set, s.Key) {
			fmt.Fprintf(out, "set %s = %s\n", s.Key, s.New)
		}
	}
	switch {
	case res.Reloaded:
		fmt.Fprintln(out, "reloaded systemd-networkd")
	case res.NetworkdStopped:
		fmt.Fprintln(f.IO.ErrOut, "notice: systemd-networkd is not running; start it to create the bridge: systemctl enable --now systemd-networkd")
	case err == nil && o.noReload && plan.NetworkdChanged():
		fmt.Fprintln(f.IO.ErrOut, "notice: systemd-networkd was not reloaded (--no-reload); run `networkctl reload`")
	}
	return err
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
// sysctls, and whether networkd would be reloaded.
func printPlan(ctx context.Context, w io.Writer, plan *hostsetup.Plan, running func(context.Context) (bool, error), reload bool) error {
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
	if plan.NetworkdChanged() && reload {
		if up, err := running(ctx); err == nil && up {
			fmt.Fprintln(&b, "would reload systemd-networkd (networkctl reload)")
		} else {
			fmt.Fprintln(&b, "systemd-networkd is not running: start it to create the bridge")
		}
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
