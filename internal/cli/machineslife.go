package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/machine"
)

// existingMachine returns the paths of machine name, which must have a
// root file system.
func existingMachine(f *Factory, name string) (machine.Paths, error) {
	p, _, err := machinePaths(f, name)
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

func newMachinesRunCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "run NAME",
		Short: "Run a machine in the foreground (Ctrl-C stops it)",
		Long: `Run machine NAME in the foreground with systemd-nspawn, which reads the
machine's settings file (NAME.nspawn in the nspawn dir). The output of
man8s-init and the app appears here. Ctrl-C, or SIGTERM to mbctl, stops the
machine the way systemd does (SIGTERM to nspawn, which sends its KillSignal
to the machine), so the app gets its own stop signal; that orderly shutdown
exits 0. When the app exits on its own, mbctl exits with the app's status.

Without a systemd system bus (containers, minimal hosts) nspawn runs with
--register=no --keep-unit.`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := existingMachine(f, args[0])
			if err != nil {
				return err
			}
			cfg, _, _ := f.Config()
			if !machine.ReadsSettings(cfg.Paths.Nspawn) {
				f.Logger().Warn("systemd-nspawn does not read settings from the configured nspawn dir; the machine runs without its settings",
					"paths.nspawn", cfg.Paths.Nspawn, "read", strings.Join(machine.SettingsDirs(), " and "))
			}
			st, err := f.Prober.Probe(p)
			if err != nil {
				return err
			}
			if st.Running {
				return fmt.Errorf("machine %s is already running; enter it with 'mbctl machines shell %s'", p.Name, p.Name)
			}
			return runForeground(cmd.Context(), f, machine.RunCommand(p, f.commands().Host()))
		},
	}
}

// runForeground runs argv and passes its exit status on.
func runForeground(ctx context.Context, f *Factory, argv []string) error {
	f.Logger().Debug("running", "argv", argv)
	code, err := f.commands().Run(ctx, argv)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitStatusError{code}
	}
	return nil
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

func newMachinesServiceCmds(f *Factory) []*cobra.Command {
	var cmds []*cobra.Command
	for _, sv := range serviceVerbs {
		cmds = append(cmds, &cobra.Command{
			Use:   sv.verb + " NAME",
			Short: sv.short,
			Long: sv.short + `.

Machines run as systemd-nspawn@NAME.service, which finds the machine through
the machinectl link (paths.machinectl) and reads its settings file. This
needs systemd as PID 1; elsewhere use 'mbctl machines run NAME'.`,
			Args:              exactArgs("NAME"),
			ValidArgsFunction: completeMachines(f),
			RunE: func(cmd *cobra.Command, args []string) error {
				p, err := existingMachine(f, args[0])
				if err != nil {
					return err
				}
				if !f.commands().Host().Systemd {
					return fmt.Errorf("'mbctl machines %s' needs systemd as PID 1, which this host does not run: use 'mbctl machines run %s' to run it in the foreground", sv.verb, p.Name)
				}
				argv, err := machine.ServiceCommand(sv.verb, p.Name)
				if err != nil {
					return err
				}
				return runForeground(cmd.Context(), f, argv)
			},
		})
	}
	return cmds
}

func newMachinesLogsCmd(f *Factory) *cobra.Command {
	var follow bool
	var lines int
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
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := existingMachine(f, args[0])
			if err != nil {
				return err
			}
			if !f.commands().Host().Systemd {
				return fmt.Errorf("'mbctl machines logs' reads systemd's journal, and systemd is not PID 1 here: a machine run with 'mbctl machines run %s' logs to its terminal", p.Name)
			}
			return f.commands().Exec(machine.LogsCommand(p.Name, follow, lines), nil)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&lines, "lines", "n", 0, "show only the last N lines")
	return cmd
}

func newMachinesShellCmd(f *Factory) *cobra.Command {
	var networkOnly bool
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
			p, err := existingMachine(f, args[0])
			if err != nil {
				return err
			}
			st, err := f.Prober.Probe(p)
			if err != nil {
				return err
			}
			if !st.Running || st.Leader == 0 {
				return fmt.Errorf("machine %s is not running: start it with 'mbctl machines start %s' or 'mbctl machines run %s'", p.Name, p.Name, p.Name)
			}
			argv, err := machine.ShellCommand(p, machine.ShellOptions{Leader: st.Leader, NetworkOnly: networkOnly, Command: args[1:]})
			if err != nil {
				return err
			}
			var env []string
			if !networkOnly {
				if env, err = machine.Env(p, f.Getenv("TERM")); err != nil {
					return err
				}
			}
			f.Logger().Debug("entering", "argv", argv, "leader", st.Leader)
			return f.commands().Exec(argv, env)
		},
	}
	cmd.Flags().BoolVar(&networkOnly, "network-only", false, "enter only the network namespace and run a host command")
	return cmd
}
