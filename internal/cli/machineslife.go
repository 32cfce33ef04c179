package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/machine"
)

// existing returns the paths of machine name, which must have a root file
// system.
func (d MachineDeps) existing(name string) (machine.Paths, error) {
	p, _, err := d.paths(name)
	if err != nil {
		return p, err
	}
	if _, err := os.Stat(p.Rootfs); errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("machine %s does not exist: no root file system at %s (see 'mbctl machines list')", name, p.Rootfs)
	} else if err != nil {
		return p, err
	}
	return p, nil
}

// runForeground runs argv with cmds and passes its exit status on.
func (d MachineDeps) runForeground(ctx context.Context, cmds commands, argv []string) error {
	d.Log.Debug("running", "argv", argv)
	code, err := cmds.Run(ctx, argv)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitStatusError{code}
	}
	return nil
}

// MachinesRunOptions are the inputs of `machines run`.
type MachinesRunOptions struct {
	MachineDeps
	Commands commands
	Name     string
}

// NewCmdMachinesRun builds `machines run`; runF, if not nil, replaces
// machinesRunRun (tests).
func NewCmdMachinesRun(f *Factory, runF func(context.Context, *MachinesRunOptions) error) *cobra.Command {
	opts := &MachinesRunOptions{MachineDeps: newMachineDeps(f), Commands: f.commands()}
	return &cobra.Command{
		Annotations: map[string]string{annotationNeedsRoot: "systemd-nspawn runs machines for root"},
		Use:         "run NAME",
		Short:       "Run a machine in the foreground (Ctrl-C stops it)",
		Long: `Run machine NAME in the foreground with systemd-nspawn, which reads the
machine's settings file (NAME.nspawn in the nspawn dir). The output of
man8s-init and the app appears here. Ctrl-C, or SIGTERM to mbctl, stops the
machine the way systemd does (SIGTERM to nspawn, which sends its KillSignal
to the machine), so the app gets its own stop signal; that orderly shutdown
exits 0. When the app exits on its own, mbctl exits with the app's status.

Without a systemd system bus (containers, minimal hosts) nspawn runs with
--register=no --keep-unit.`,
		Example:           `  mbctl machines run registry`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesRunRun),
	}
}

func machinesRunRun(ctx context.Context, opts *MachinesRunOptions) error {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	// A pull, upgrade or rollback killed midway is taken back first: the
	// machine runs as its last complete version.
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	if p, err = opts.existing(opts.Name); err != nil {
		return err
	}
	if !machine.ReadsSettings(cfg.Paths.Nspawn) {
		opts.Log.Warn("systemd-nspawn does not read settings from the configured nspawn dir; the machine runs without its settings",
			"paths.nspawn", cfg.Paths.Nspawn, "read", strings.Join(machine.SettingsDirs(), " and "))
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	if st.Running {
		return fmt.Errorf("machine %s is already running; enter it with 'mbctl machines shell %s'", p.Name, p.Name)
	}
	opts.envWarnings(p)
	stop := watchReady(opts.IO.ErrOut, opts.Log, p.Name)
	defer stop()
	return opts.runForeground(ctx, opts.Commands, machine.RunCommand(p, opts.Commands.Host()))
}

// serviceVerbs are the verbs that go through systemd.
var serviceVerbs = []struct{ verb, short string }{
	{machine.VerbStart, "Start a machine as a systemd service (systemd-nspawn@NAME)"},
	{machine.VerbStop, "Stop a running machine (the app gets its own stop signal)"},
	{machine.VerbRestart, "Restart a machine's service"},
	{machine.VerbStatus, "Show a machine's systemd status"},
	{machine.VerbEnable, "Start a machine at boot"},
	{machine.VerbDisable, "Do not start a machine at boot"},
}

// MachinesServiceOptions are the inputs of the verbs that hand a machine to
// systemd (start, stop, restart, status, enable, disable).
type MachinesServiceOptions struct {
	MachineDeps
	Commands commands
	// Verb is one of serviceVerbs.
	Verb string
	Name string
}

// NewCmdMachinesService builds `machines VERB` for one of serviceVerbs;
// runF, if not nil, replaces machinesServiceRun (tests).
func NewCmdMachinesService(f *Factory, verb, short string, runF func(context.Context, *MachinesServiceOptions) error) *cobra.Command {
	opts := &MachinesServiceOptions{MachineDeps: newMachineDeps(f), Commands: f.commands(), Verb: verb}
	var annotations map[string]string
	if verb != machine.VerbStatus { // status works for everyone
		annotations = map[string]string{annotationNeedsRoot: "systemd starts, stops and enables machines for root"}
	}
	return &cobra.Command{
		Annotations: annotations,
		Use:         verb + " NAME",
		Short:       short,
		Long: short + `.

Machines run as systemd-nspawn@NAME.service, which finds the machine through
the machinectl link (paths.machinectl) and reads its settings file. This
needs systemd as PID 1; elsewhere use 'mbctl machines run NAME'.`,
		Example:           fmt.Sprintf("  mbctl machines %s registry", verb),
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesServiceRun),
	}
}

func machinesServiceRun(ctx context.Context, opts *MachinesServiceOptions) error {
	p, err := opts.existing(opts.Name)
	if err != nil {
		return err
	}
	if !opts.Commands.Host().Systemd {
		return fmt.Errorf("'mbctl machines %s' needs systemd as PID 1, which this host does not run: use 'mbctl machines run %s' to run it in the foreground", opts.Verb, p.Name)
	}
	argv, err := machine.ServiceCommand(opts.Verb, p.Name)
	if err != nil {
		return err
	}
	if opts.Verb == machine.VerbStart || opts.Verb == machine.VerbRestart {
		if cfg, _, err := opts.Config(); err == nil {
			cleanDeadRuns(opts.IO, opts.Log, cfg.Paths) // as in machines run
		}
		opts.envWarnings(p)
		start := time.Now()
		if err := opts.runForeground(ctx, opts.Commands, argv); err != nil {
			return err
		}
		opts.reportStarted(p, time.Since(start))
		return nil
	}
	return opts.runForeground(ctx, opts.Commands, argv)
}

// MachinesLogsOptions are the inputs of `machines logs`.
type MachinesLogsOptions struct {
	MachineDeps
	Commands commands
	Name     string
	Follow   bool
	Lines    int
}

// NewCmdMachinesLogs builds `machines logs`; runF, if not nil, replaces
// machinesLogsRun (tests).
func NewCmdMachinesLogs(f *Factory, runF func(context.Context, *MachinesLogsOptions) error) *cobra.Command {
	opts := &MachinesLogsOptions{MachineDeps: newMachineDeps(f), Commands: f.commands()}
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Show a machine's logs (man8s-init and the app)",
		Long: `Show the journal of systemd-nspawn@NAME.service: what man8s-init and the
app wrote. Needs systemd; a machine started with 'mbctl machines run' logs
to that terminal instead.`,
		Example: `  mbctl machines logs registry -f
  mbctl machines logs registry -n 50`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesLogsRun),
	}
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&opts.Lines, "lines", "n", 0, "show only the last N lines")
	return cmd
}

func machinesLogsRun(_ context.Context, opts *MachinesLogsOptions) error {
	if opts.Lines < 0 {
		return usagef("--lines %d: want a count of 0 or more (0 shows everything)", opts.Lines)
	}
	p, err := opts.existing(opts.Name)
	if err != nil {
		return err
	}
	if !opts.Commands.Host().Systemd {
		return fmt.Errorf("'mbctl machines logs' reads systemd's journal, and systemd is not PID 1 here: a machine run with 'mbctl machines run %s' logs to its terminal", p.Name)
	}
	return opts.Commands.Exec(machine.LogsCommand(p.Name, opts.Follow, opts.Lines), nil)
}

// MachinesShellOptions are the inputs of `machines shell`.
type MachinesShellOptions struct {
	MachineDeps
	Commands commands
	// Getenv reads $TERM, which the shell inherits.
	Getenv func(string) string

	Name        string
	Command     []string
	NetworkOnly bool
}

// NewCmdMachinesShell builds `machines shell`; runF, if not nil, replaces
// machinesShellRun (tests).
func NewCmdMachinesShell(f *Factory, runF func(context.Context, *MachinesShellOptions) error) *cobra.Command {
	opts := &MachinesShellOptions{MachineDeps: newMachineDeps(f), Commands: f.commands(), Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "shell NAME [-- CMD ARGS...]",
		Short: "Run a shell or command inside a running machine",
		Long: `Enter running machine NAME and run CMD, by default a login shell: the
image's /bin/sh, or man8s-init's busybox for images without a shell. The
command runs in all the machine's namespaces (user, mount, pid, network,
hostname, IPC, cgroup) with the machine's environment (its settings'
Environment= and man8env.env). The terminal, Ctrl-C and the window size work
as in any shell; the command's exit status is mbctl's.

--network-only enters only the machine's network namespace and runs a HOST
command there: the host's tools see the machine's interfaces, addresses
and routes.`,
		Example: `  mbctl machines shell registry
  mbctl machines shell registry -- ls /var/lib/registry
  mbctl machines shell registry --network-only -- ip -6 addr
  mbctl machines shell registry --network-only -- iperf3 -s`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || (cmd.ArgsLenAtDash() != -1 && cmd.ArgsLenAtDash() != 1) || (cmd.ArgsLenAtDash() == -1 && len(args) != 1) {
				return usagef("%s takes NAME, then optionally -- CMD ARGS...", cmd.CommandPath())
			}
			return nil
		},
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Command = args[0], args[1:]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesShellRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.NetworkOnly, "network-only", false, "enter only the network namespace and run a host command")
	return cmd
}

func machinesShellRun(_ context.Context, opts *MachinesShellOptions) error {
	p, err := opts.existing(opts.Name)
	if err != nil {
		return err
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	if !st.Running || st.Leader == 0 {
		return fmt.Errorf("machine %s is not running: start it with 'mbctl machines start %s' or 'mbctl machines run %s'", p.Name, p.Name, p.Name)
	}
	argv, err := machine.ShellCommand(p, machine.ShellOptions{Leader: st.Leader, NetworkOnly: opts.NetworkOnly, Command: opts.Command})
	if err != nil {
		return err
	}
	var env []string
	if !opts.NetworkOnly {
		if env, err = machine.Env(p, opts.Getenv("TERM")); err != nil {
			return err
		}
	}
	opts.Log.Debug("entering", "argv", argv, "leader", st.Leader)
	return opts.Commands.Exec(argv, env)
}
