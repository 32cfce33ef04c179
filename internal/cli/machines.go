package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/secret"
	"github.com/man8s/mbctl/internal/host/unit"
)

func newMachinesCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("machines", "Create, run and remove machines",
		`A machine is an OCI image unpacked into a systemd-nspawn root filesystem,
plus the plain files that configure it: container.nspawn (nspawn settings)
and man8env.env (the application's environment). Edit those files by hand;
mbctl keeps your comments when it rewrites them.`)
	cmd.Aliases = []string{"machine", "m"}
	cmd.AddCommand(
		newMachinesPullCmd(f),
		NewCmdMachinesList(f, nil),
		NewCmdMachinesShow(f, nil),
		NewCmdMachinesCheck(f, nil),
		NewCmdMachinesRemove(f, nil),
		NewCmdMachinesUpgrade(f, nil),
		NewCmdMachinesRollback(f, nil),
		NewCmdMachinesRebuild(f, nil),
		NewCmdMachinesClone(f, nil),
		NewCmdMachinesSnapshot(f, nil),
		NewCmdMachinesSnapshots(f, nil),
		NewCmdMachinesRestore(f, nil),
		NewCmdMachinesAutoUpdate(f, nil),
		NewCmdMachinesDepend(f, nil),
		NewCmdMachinesSet(f, nil),
		NewCmdMachinesPublish(f, nil),
		NewCmdMachinesUnpublish(f, nil),
		NewCmdMachinesRun(f, nil),
		NewCmdMachinesLogs(f, nil),
		NewCmdMachinesShell(f, nil),
		newMachinesSecretCmd(f),
	)
	for _, sv := range serviceVerbs {
		cmd.AddCommand(NewCmdMachinesService(f, sv.verb, sv.short, nil))
	}
	return cmd
}

// MachineDeps are what every machine verb reads: the configuration, the
// probe for running machines and the streams.
type MachineDeps struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Prober finds running machines.
	Prober machine.Prober
}

func newMachineDeps(f *Factory) MachineDeps {
	return MachineDeps{IO: f.IO, Config: f.Config, Log: f.Logger(), Prober: f.Prober}
}

// paths validates name and returns its paths under the configured
// directories.
func (d MachineDeps) paths(name string) (machine.Paths, config.Config, error) {
	if err := machine.ValidateName(name); err != nil {
		return machine.Paths{}, config.Config{}, err
	}
	cfg, _, err := d.Config()
	if err != nil {
		return machine.Paths{}, cfg, err
	}
	return machine.PathsFor(cfg.Paths, name), cfg, nil
}

// envWarnings warns on stderr about the lines of machine p's env file that
// do not do what they look like (envfile.Problems), and returns them.
func (d MachineDeps) envWarnings(p machine.Paths) []envfile.Problem {
	f, err := envfile.ReadFile(p.Env)
	if err != nil {
		return nil // missing or unreadable: the command reports it its own way
	}
	return d.warnProblems(p.Env, f)
}

// warnProblems warns about f's problems (read from path) and returns them.
func (d MachineDeps) warnProblems(path string, f *envfile.File) []envfile.Problem {
	problems := f.Problems()
	for _, pr := range problems {
		fmt.Fprintf(d.IO.ErrOut, "warning: %s %s\n", path, pr)
	}
	return problems
}

// MachinesListOptions are the inputs of `machines list`.
type MachinesListOptions struct {
	MachineDeps
	JSON bool
}

// NewCmdMachinesList builds `machines list`; runF, if not nil, replaces
// machinesListRun (tests).
func NewCmdMachinesList(f *Factory, runF func(context.Context, *MachinesListOptions) error) *cobra.Command {
	opts := &MachinesListOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List machines with their state, image and Yggdrasil address",
		Long: `List the machines on this host: every machine dir (paths.machines) and
config dir (paths.configs). A machine runs when systemd-machined knows it or
a systemd-nspawn process runs it (hosts without systemd).

A machine some of whose paths are missing shows as "(partial)", and mbctl
says on stderr how to repair it.`,
		Example: `  mbctl machines list
  mbctl machines list --json | jq -r '.[] | select(.state.running) | .name'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesListRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print as JSON")
	return cmd
}

func machinesListRun(_ context.Context, opts *MachinesListOptions) error {
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	names, err := machine.Names(cfg.Paths)
	if err != nil {
		return err
	}
	paths := make([]machine.Paths, len(names))
	for i, n := range names {
		paths[i] = machine.PathsFor(cfg.Paths, n)
	}
	states, err := opts.Prober.ProbeAll(paths)
	if err != nil {
		return err
	}
	infos := make([]machine.Info, 0, len(paths))
	for i, p := range paths {
		in, err := machine.Describe(p, states[i])
		if err != nil {
			opts.Log.Warn("reading machine", "name", p.Name, "err", err)
		}
		if in.Health, err = opts.Prober.Health(states[i]); err != nil {
			opts.Log.Warn("reading machine", "name", p.Name, "err", err)
		}
		infos = append(infos, in)
	}
	for _, in := range infos {
		if fix := in.Fix(); fix != "" {
			fmt.Fprintf(opts.IO.ErrOut, "warning: machine %s is incomplete (missing: %s): %s\n", in.Name, strings.Join(in.Missing, ", "), fix)
		}
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, infos)
	}
	if len(infos) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "No machines in %s. Create one with 'mbctl machines pull IMAGE NAME'.\n", cfg.Paths.Machines)
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tHEALTH\tIMAGE\tYGG ADDRESS\tCREATED")
	for _, in := range infos {
		state := in.State.String()
		if in.Incomplete() {
			state += " (partial)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, state, orDash(machine.HealthString(in.Health)), orDash(in.Image), orDash(in.YggAddress), orDash(formatTime(in.Created)))
	}
	return tw.Flush()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

// machineShow is the --json form of `machines show`.
type machineShow struct {
	machine.Info
	Settings    string            `json:"settings,omitempty"`
	Environment string            `json:"environment,omitempty"`
	EnvProblems []envfile.Problem `json:"env_problems,omitempty"`
	// Secrets names the machine's secrets (never their values).
	Secrets []string `json:"secrets"`
	machineUnits
}

// MachinesShowOptions are the inputs of `machines show`.
type MachinesShowOptions struct {
	MachineDeps
	Name string
	JSON bool
}

// NewCmdMachinesShow builds `machines show`; runF, if not nil, replaces
// machinesShowRun (tests).
func NewCmdMachinesShow(f *Factory, runF func(context.Context, *MachinesShowOptions) error) *cobra.Command {
	opts := &MachinesShowOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a machine's paths, settings, environment and state",
		Long: `Show machine NAME: its state, image, address, paths, and the content of its
settings (container.nspawn) and environment (man8env.env). Lines of the
environment that man8s-init ignores or reads otherwise than they look
("export KEY=1", a quoted value) are warned about on stderr; 'mbctl machines
check NAME' checks everything else.`,
		Example: `  mbctl machines show registry
  mbctl machines show registry --json | jq .state.leader`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesShowRun),
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print as JSON (settings and environment as text)")
	return cmd
}

func machinesShowRun(_ context.Context, opts *MachinesShowOptions) error {
	p, _, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	in, env, err := machine.DescribeEnv(p, st)
	if err != nil {
		return err
	}
	if in.Health, err = opts.Prober.Health(st); err != nil {
		opts.Log.Warn("reading machine", "name", p.Name, "err", err)
	}
	if in.Ports, err = opts.Prober.Reachability(st); err != nil {
		opts.Log.Warn("reading machine", "name", p.Name, "err", err)
	}
	if len(in.Missing) == len(p.Entries()) {
		return fmt.Errorf("machine %s does not exist (see 'mbctl machines list')", p.Name)
	}
	show := machineShow{Info: in, Settings: readOrEmpty(p.Settings), Environment: string(env)}
	if env != nil {
		// The file DescribeEnv read, parsed again from memory.
		if f, err := envfile.Parse(bytes.NewReader(env)); err == nil {
			show.EnvProblems = opts.warnProblems(p.Env, f)
		}
	}
	show.machineUnits = opts.readUnits(p.Name)
	if show.Secrets, err = secret.For(p).Names(); err != nil {
		show.Secrets = []string{}
		if !errors.Is(err, machine.ErrNotFound) {
			opts.Log.Warn("reading secrets", "name", p.Name, "err", err)
		}
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, show)
	}
	return printShow(opts.IO.Out, show)
}

func readOrEmpty(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

func printShow(w io.Writer, s machineShow) error {
	state := s.State.String()
	switch {
	case s.State.Leader != 0 && s.State.Nspawn != 0:
		state += fmt.Sprintf(" (leader PID %d, systemd-nspawn PID %d)", s.State.Leader, s.State.Nspawn)
	case s.State.Leader != 0:
		state += fmt.Sprintf(" (leader PID %d, via %s)", s.State.Leader, s.State.Via)
	case s.State.Nspawn != 0:
		state += fmt.Sprintf(" (systemd-nspawn PID %d, starting)", s.State.Nspawn)
	}
	ygg := s.YggAddress
	if t, _ := man8env.ParseTemplate(s.Template); ygg == "" && s.Template != "" && !man8env.HasOwnNetwork(t) {
		ygg = "none (" + t + ": the host's addresses)"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"Name", s.Name}, {"State", state}, {"Image", s.Image}, {"Digest", s.Digest},
		{"Ygg address", ygg}, {"Template", s.Template}, {"Init mode", s.InitMode},
		{"Created", formatTime(s.Created)}, {"Health", describeHealth(s.Health)}, {"Ports", describePorts(s.Ports)}, {"Published", describePublishedList(s.Published)}, {"Secrets", strings.Join(s.Secrets, ", ")},
		{"Depends on", describeDeps(s.DependsOn, func(d unit.Dependency) string { return d.On })},
		{"Needed by", describeDeps(s.Dependants, func(d unit.Dependency) string { return d.Machine })},
		{"Restart", s.Restart},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], orDash(row[1]))
	}
	fmt.Fprintln(tw, "Paths:")
	missing := map[string]bool{}
	for _, m := range s.Missing {
		missing[m] = true
	}
	for _, e := range s.Paths.Entries() {
		note := ""
		if missing[e.What] {
			note = "  (missing)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", e.What, e.Path, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, file := range []struct{ title, path, content string }{
		{"Settings", s.Paths.Settings, s.Settings},
		{"Environment", s.Paths.Env, s.Environment},
	} {
		if file.content == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", file.title, file.path)
		for _, l := range strings.Split(strings.TrimRight(file.content, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	return nil
}

// MachinesCheckOptions are the inputs of `machines check`.
type MachinesCheckOptions struct {
	MachineDeps
	Name string
	JSON bool
}

// machineCheck is the --json form of `machines check`.
type machineCheck struct {
	Name   string                `json:"name"`
	OK     bool                  `json:"ok"`
	Checks []machine.CheckResult `json:"checks"`
}

// NewCmdMachinesCheck builds `machines check`; runF, if not nil, replaces
// machinesCheckRun (tests).
func NewCmdMachinesCheck(f *Factory, runF func(context.Context, *MachinesCheckOptions) error) *cobra.Command {
	opts := &MachinesCheckOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:   "check NAME",
		Short: "Check a machine's files before it starts",
		Long: `Check machine NAME's files the way systemd-nspawn and man8s-init will read
them, and say what to do about each problem, before a start finds out:

  root file system   present, with the /usr that systemd-nspawn requires
  man8s-init         installed and executable in the machine
  config dir         present, settings parse
  links              the nspawn settings link and machinectl image link
                     point to the machine's files
  binds              every Bind=/BindReadOnly= source exists
  published ports    Port= lines parse, publish each host port once, and
                     the machine has a network of its own (nspawn refuses
                     Port= without one)
  environment        lines man8s-init ignores or reads otherwise than they
                     look (warnings); MAN8S_* values it would refuse;
                     the Yggdrasil address belongs to the machine's name

Nothing is changed. Exits 1 when a check fails (warnings alone exit 0).`,
		Example: `  mbctl machines check registry
  mbctl machines check registry --json | jq '.checks[] | select(.status != "ok")'`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesCheckRun),
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print every check as JSON")
	return cmd
}

func machinesCheckRun(_ context.Context, opts *MachinesCheckOptions) error {
	p, _, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	existing, err := p.Existing()
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		return fmt.Errorf("machine %s does not exist (see 'mbctl machines list')", p.Name)
	}
	results := machine.Check(p)
	failed := 0
	for _, r := range results {
		if r.Status == machine.CheckFail {
			failed++
		}
	}
	if opts.JSON {
		if err := writeJSON(opts.IO.Out, machineCheck{Name: p.Name, OK: failed == 0, Checks: results}); err != nil {
			return err
		}
	} else if err := printCheck(opts.IO.Out, results); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("machine %s: %d of %d checks failed", p.Name, failed, len(results))
	}
	return nil
}

func printCheck(w io.Writer, results []machine.CheckResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range results {
		line := r.Path
		if r.Detail != "" {
			line += ": " + r.Detail
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Status, r.What, line)
		if r.Fix != "" {
			fmt.Fprintf(tw, "\t\t  fix: %s\n", r.Fix)
		}
	}
	return tw.Flush()
}

// MachinesRemoveOptions are the inputs of `machines remove`.
type MachinesRemoveOptions struct {
	MachineDeps
	// Confirm asks before deleting (nil: there is nobody to ask).
	Confirm confirmFunc

	Name     string
	Yes      bool
	KeepData bool
}

// NewCmdMachinesRemove builds `machines remove`; runF, if not nil, replaces
// machinesRemoveRun (tests).
func NewCmdMachinesRemove(f *Factory, runF func(context.Context, *MachinesRemoveOptions) error) *cobra.Command {
	opts := &MachinesRemoveOptions{MachineDeps: newMachineDeps(f), Confirm: f.prompter().confirm}
	cmd := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a stopped machine and its files",
		Long: `Delete machine NAME: its root file system, config dir, storage dir (data
volumes), the nspawn settings link and the machinectl image link. mbctl lists
what it will delete and asks first; --yes skips the question (needed when
there is no terminal).

--keep-data keeps the config dir and the storage dir, which are the machine
(its files, secrets and data): 'mbctl machines rebuild NAME' makes it again
from them, 'mbctl machines pull --adopt IMAGE NAME' with another image.

A running machine is not removed. Symlinks are deleted as links, never
followed; a custom volume dir outside the machine's dirs is kept and named.
Works on the leftovers of a machine whose creation was cut short.`,
		Example: `  mbctl machines remove registry
  mbctl machines remove registry --yes --keep-data`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesRemoveRun),
	}
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.KeepData, "keep-data", false, "keep the config dir and the storage dir (files, secrets, data): 'machines rebuild' or 'machines pull --adopt' makes the machine again")
	return cmd
}

func machinesRemoveRun(ctx context.Context, opts *MachinesRemoveOptions) error {
	name := opts.Name
	p, cfg, err := opts.paths(name)
	if err != nil {
		return err
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	if st.Running {
		pid := st.Leader
		if pid == 0 {
			pid = st.Nspawn
		}
		return fmt.Errorf("machine %s is running (PID %d): stop it first with 'mbctl machines stop %s' (or Ctrl-C in its 'mbctl machines run')", name, pid, name)
	}
	plan, err := machine.PlanRemove(p, opts.KeepData)
	if errors.Is(err, machine.ErrNotFound) {
		return fmt.Errorf("machine %s does not exist (see 'mbctl machines list')", name)
	}
	if err != nil {
		return err
	}
	w := opts.IO.ErrOut
	printEntries := func(title string, es []machine.Entry) {
		if len(es) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, e := range es {
			fmt.Fprintf(tw, "  %s\t%s\n", e.What, e.Path)
		}
		tw.Flush()
	}
	warnDependants(opts.MachineDeps, name)
	printEntries(fmt.Sprintf("Removing machine %s deletes:", name), plan.Delete)
	printEntries("Already missing:", plan.Missing)
	printEntries("Kept:", plan.Kept)
	if err := confirmAction(ctx, opts.IO, opts.Confirm, opts.Yes, "removing machine "+name, fmt.Sprintf("Delete machine %s?", name)); err != nil {
		return err
	}
	dirs := cfg.Paths
	digests := provision.ImageRootsOf(dirs, name)
	if err := plan.Execute(); err != nil {
		return err
	}
	if !opts.KeepData {
		removeDropIns(opts.MachineDeps, name)
	}
	fmt.Fprintf(opts.IO.Out, "Removed machine %s.\n", name)
	if len(digests) > 0 {
		freed, err := provision.FreeImageRoots(dirs, digests)
		for _, r := range freed {
			fmt.Fprintf(opts.IO.Out, "Deleted the image root %s (%s): no machine uses it any more.\n", r.Path, humanBytes(r.Size))
		}
		if err != nil {
			fmt.Fprintf(w, "warning: the image roots of machine %s stay: %v ('mbctl cache prune' frees them later)\n", name, err)
		}
	}
	return nil
}

// completeMachines completes machine names.
func completeMachines(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, _, err := f.Config()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, _ := machine.Names(cfg.Paths)
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
