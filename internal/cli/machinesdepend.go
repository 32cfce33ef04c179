package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/unit"
)

// MachinesDependOptions are the inputs of `machines depend`.
type MachinesDependOptions struct {
	MachineDeps
	Commands commands

	Name   string
	On     []string
	Wants  bool
	Remove bool
	JSON   bool
}

// machineDepend is one line of `machines depend --json`.
type machineDepend struct {
	unit.Dependency
	// Changed is false when the drop-in was already so (or, with
	// --remove, not there).
	Changed bool `json:"changed"`
	Removed bool `json:"removed,omitempty"`
}

// NewCmdMachinesDepend builds `machines depend`; runF, if not nil,
// replaces machinesDependRun (tests).
func NewCmdMachinesDepend(f *Factory, runF func(context.Context, *MachinesDependOptions) error) *cobra.Command {
	opts := &MachinesDependOptions{MachineDeps: newMachineDeps(f), Commands: f.commands()}
	cmd := &cobra.Command{
		Use:   "depend NAME --on OTHER...",
		Short: "Start a machine after others, and only with them",
		Long: `Make machine NAME start after machine OTHER and need it: a systemd drop-in
for systemd-nspawn@NAME.service with After= and Requires= on
systemd-nspawn@OTHER.service (--wants: Wants= instead of Requires=).

Machines are Type=notify units that count as started when man8s-init says
their app is ready (MAN8S_READY, the image's HEALTHCHECK), so NAME's app
starts only once OTHER's app is ready, not merely once its nspawn runs.
With Requires=, starting NAME starts OTHER, NAME does not start when OTHER
fails to, and stopping OTHER stops NAME; with --wants, NAME starts anyway.

The drop-in is one file, paths.systemd_units/systemd-nspawn@NAME.service.d/
50-mbctl-depend-OTHER.conf, beside any drop-ins of your own, and mbctl runs
'systemctl daemon-reload'. --remove deletes it. A dependency that would
close a cycle is refused. 'mbctl machines show' lists a machine's
dependencies both ways.`,
		Example: `  mbctl machines depend app --on db
  mbctl machines depend app --on db --on cache --wants
  mbctl machines depend app --on cache --remove`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesDependRun),
	}
	cmd.Flags().StringSliceVar(&opts.On, "on", nil, "the machine(s) NAME depends on (repeatable)")
	cmd.Flags().BoolVar(&opts.Wants, "wants", false, "Wants= instead of Requires=: start after OTHER, but also without it")
	cmd.Flags().BoolVar(&opts.Remove, "remove", false, "remove the dependency instead")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was written as JSON")
	return cmd
}

func machinesDependRun(ctx context.Context, opts *MachinesDependOptions) error {
	if len(opts.On) == 0 {
		return usagef("machines depend %s: name the machine it depends on with --on OTHER", opts.Name)
	}
	if opts.Remove && opts.Wants {
		return usagef("--wants and --remove do not go together: --remove takes away either kind")
	}
	p, err := opts.existing(opts.Name)
	if err != nil {
		return err
	}
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	dir := cfg.Paths.SystemdUnits
	kind := unit.Requires
	if opts.Wants {
		kind = unit.Wants
	}
	var results []machineDepend
	changed := false
	for _, on := range opts.On {
		if err := machine.ValidateName(on); err != nil {
			return usagef("--on %s: %v", on, err)
		}
		if opts.Remove {
			d, removed, err := unit.Undepend(dir, p.Name, on)
			if err != nil {
				return err
			}
			results = append(results, machineDepend{Dependency: d, Changed: removed, Removed: removed})
			changed = changed || removed
			if !opts.JSON {
				if removed {
					fmt.Fprintf(opts.IO.Out, "Removed %s: %s no longer depends on %s.\n", d.Path, p.Name, on)
				} else {
					fmt.Fprintf(opts.IO.ErrOut, "Machine %s did not depend on %s (no %s).\n", p.Name, on, d.Path)
				}
			}
			continue
		}
		if _, err := opts.existing(on); err != nil {
			return fmt.Errorf("--on %s: %w", on, err)
		}
		d, ch, err := unit.Depend(dir, p.Name, on, kind)
		if err != nil {
			return err
		}
		results = append(results, machineDepend{Dependency: d, Changed: ch})
		changed = changed || ch
		if !opts.JSON {
			what := "starts after %s and only with it (Requires=)"
			if kind == unit.Wants {
				what = "starts after %s when both start (Wants=)"
			}
			verb := "Wrote"
			if !ch {
				verb = "Unchanged"
			}
			fmt.Fprintf(opts.IO.Out, "%s %s: %s %s.\n", verb, d.Path, p.Name, fmt.Sprintf(what, on))
		}
	}
	if changed {
		if err := daemonReload(ctx, opts.MachineDeps, opts.Commands); err != nil {
			return err
		}
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, results)
	}
	return nil
}

// daemonReload makes systemd read the changed drop-ins; without systemd
// as PID 1 it says when they apply instead.
func daemonReload(ctx context.Context, d MachineDeps, cmds commands) error {
	if !cmds.Host().Systemd {
		fmt.Fprintln(d.IO.ErrOut, "systemd is not PID 1 here: the drop-in applies once systemd runs the machine ('mbctl machines run' ignores it).")
		return nil
	}
	return d.runForeground(ctx, cmds, unit.DaemonReload())
}

// MachinesSetOptions are the inputs of `machines set`.
type MachinesSetOptions struct {
	MachineDeps
	Commands commands

	Name    string
	Restart string
	JSON    bool
}

// machineSet is the --json form of `machines set`.
type machineSet struct {
	Name    string `json:"name"`
	Restart string `json:"restart"`
	Path    string `json:"path"`
	Changed bool   `json:"changed"`
}

// NewCmdMachinesSet builds `machines set`; runF, if not nil, replaces
// machinesSetRun (tests).
func NewCmdMachinesSet(f *Factory, runF func(context.Context, *MachinesSetOptions) error) *cobra.Command {
	opts := &MachinesSetOptions{MachineDeps: newMachineDeps(f), Commands: f.commands()}
	cmd := &cobra.Command{
		Use:   "set NAME --restart POLICY",
		Short: "Change how systemd runs a machine (its restart policy)",
		Long: `Change how systemd runs machine NAME. --restart writes the restart policy of
systemd-nspawn@NAME.service, as 'machines pull --restart' does:

  no           never restarted (systemd-nspawn@.service's own default)
  on-failure   restarted when the machine ends with a failure: the app exits
               non-zero or is killed, the machine never got ready
               (MAN8S_READY_TIMEOUT), or it turned unhealthy with
               MAN8S_ON_UNHEALTHY=stop
  always       restarted whenever it ends, but not after a stop

The policy is one drop-in, paths.systemd_units/systemd-nspawn@NAME.service.d/
50-mbctl-restart.conf, and mbctl runs 'systemctl daemon-reload'; a running
machine keeps running and the policy counts from its next end.`,
		Example: `  mbctl machines set registry --restart on-failure
  mbctl machines set registry --restart no --json`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesSetRun),
	}
	cmd.Flags().StringVar(&opts.Restart, "restart", "", "restart policy: "+strings.Join(unit.RestartPolicies, ", "))
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was written as JSON")
	return cmd
}

func machinesSetRun(ctx context.Context, opts *MachinesSetOptions) error {
	if opts.Restart == "" {
		return usagef("machines set %s: say what to change, e.g. --restart on-failure", opts.Name)
	}
	if err := unit.ValidateRestart(opts.Restart); err != nil {
		return usagef("--restart: %v", err)
	}
	p, err := opts.existing(opts.Name)
	if err != nil {
		return err
	}
	res, err := setRestart(ctx, opts.MachineDeps, opts.Commands, p.Name, opts.Restart)
	if err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, res)
	}
	verb := "Wrote"
	if !res.Changed {
		verb = "Unchanged"
	}
	fmt.Fprintf(opts.IO.Out, "%s %s: machine %s restarts: %s.\n", verb, res.Path, p.Name, res.Restart)
	return nil
}

// setRestart writes machine name's restart policy and reloads systemd.
func setRestart(ctx context.Context, d MachineDeps, cmds commands, name, policy string) (machineSet, error) {
	cfg, _, err := d.Config()
	if err != nil {
		return machineSet{}, err
	}
	path, changed, err := unit.SetRestart(cfg.Paths.SystemdUnits, name, policy)
	res := machineSet{Name: name, Restart: policy, Path: path, Changed: changed}
	if err != nil {
		return res, err
	}
	if changed {
		err = daemonReload(ctx, d, cmds)
	}
	return res, err
}

// machineUnits is what `machines show` says of a machine's drop-ins.
type machineUnits struct {
	DependsOn  []unit.Dependency `json:"depends_on"`
	Dependants []unit.Dependency `json:"dependants"`
	Restart    string            `json:"restart,omitempty"`
}

// readUnits reads machine name's drop-ins (errors are logged: show goes on).
func (d MachineDeps) readUnits(name string) machineUnits {
	u := machineUnits{DependsOn: []unit.Dependency{}, Dependants: []unit.Dependency{}}
	cfg, _, err := d.Config()
	if err != nil {
		return u
	}
	dir := cfg.Paths.SystemdUnits
	if deps, err := unit.DependsOn(dir, name); err != nil {
		d.Log.Warn("reading dependencies", "name", name, "err", err)
	} else if deps != nil {
		u.DependsOn = deps
	}
	if deps, err := unit.Dependants(dir, name); err != nil {
		d.Log.Warn("reading dependants", "name", name, "err", err)
	} else if deps != nil {
		u.Dependants = deps
	}
	if u.Restart, err = unit.Restart(dir, name); err != nil {
		d.Log.Warn("reading the restart policy", "name", name, "err", err)
	}
	return u
}

// describeDeps is a Depends on / Needed by row: "db (requires), cache (wants)".
func describeDeps(ds []unit.Dependency, other func(unit.Dependency) string) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%s (%s)", other(d), d.Kind)
	}
	return strings.Join(parts, ", ")
}

// warnDependants warns, before machine name is removed, about the machines
// that depend on it: with Requires= they will not start without it.
func warnDependants(d MachineDeps, name string) {
	u := d.readUnits(name)
	for _, dep := range u.Dependants {
		what := "will not start without it (Requires=)"
		if dep.Kind == unit.Wants {
			what = "start after it when both start (Wants=)"
		}
		fmt.Fprintf(d.IO.ErrOut, "warning: machine %s depends on %s and %s; after the removal run 'mbctl machines depend %s --on %s --remove' (%s)\n",
			dep.Machine, name, what, dep.Machine, name, dep.Path)
	}
}

// removeDropIns deletes the drop-ins mbctl wrote for machine name.
func removeDropIns(d MachineDeps, name string) {
	cfg, _, err := d.Config()
	if err != nil {
		return
	}
	removed, err := unit.RemoveAll(cfg.Paths.SystemdUnits, name)
	if err != nil {
		d.Log.Warn("removing drop-ins", "name", name, "err", err)
	}
	for _, p := range removed {
		fmt.Fprintf(d.IO.ErrOut, "Removed drop-in %s.\n", p)
	}
}

// checkPullRestart checks machines pull --restart before anything is made.
func checkPullRestart(policy string) error {
	if policy == "" {
		return nil
	}
	if err := unit.ValidateRestart(policy); err != nil {
		return usagef("--restart: %v", err)
	}
	return nil
}

// pullRestart writes the restart policy of machines pull --restart.
func pullRestart(ctx context.Context, opts *MachinesPullOptions) error {
	if opts.Restart == "" {
		return nil
	}
	cmds := opts.Commands
	if cmds == nil {
		cmds = systemCommands{}
	}
	d := MachineDeps{IO: opts.IO, Config: opts.Config, Log: opts.Log}
	res, err := setRestart(ctx, d, cmds, opts.Name, opts.Restart)
	if err != nil {
		return fmt.Errorf("machine %s was created, but its restart policy was not set (set it with 'mbctl machines set %s --restart %s'): %w", opts.Name, opts.Name, opts.Restart, err)
	}
	if !opts.JSON && !opts.Quiet {
		fmt.Fprintf(opts.IO.ErrOut, "Restart policy %s: %s\n", res.Restart, res.Path)
	}
	return nil
}
