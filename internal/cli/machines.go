package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
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
		newMachinesListCmd(f),
		newMachinesShowCmd(f),
		newMachinesRemoveCmd(f),
		newMachinesRunCmd(f),
		newMachinesLogsCmd(f),
		newMachinesShellCmd(f),
	)
	cmd.AddCommand(newMachinesServiceCmds(f)...)
	return cmd
}

// machinePaths validates name and returns its paths under the configured
// directories.
func machinePaths(f *Factory, name string) (machine.Paths, config.Config, error) {
	if err := machine.ValidateName(name); err != nil {
		return machine.Paths{}, config.Config{}, err
	}
	cfg, _, err := f.Config()
	if err != nil {
		return machine.Paths{}, cfg, err
	}
	return machine.PathsFor(cfg.Paths, name), cfg, nil
}

func newMachinesListCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List machines with their state, image and Yggdrasil address",
		Long: `List the machines on this host: every machine dir (paths.machines) and
config dir (paths.configs). A machine runs when systemd-machined knows it or
a systemd-nspawn process runs it (hosts without systemd).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := f.Config()
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
			states, err := f.Prober.ProbeAll(paths)
			if err != nil {
				return err
			}
			infos := make([]machine.Info, 0, len(paths))
			for i, p := range paths {
				in, err := machine.Describe(p, states[i])
				if err != nil {
					f.Logger().Warn("reading machine", "name", p.Name, "err", err)
				}
				infos = append(infos, in)
			}
			if asJSON {
				return writeJSON(f.IO.Out, infos)
			}
			if len(infos) == 0 {
				fmt.Fprintf(f.IO.ErrOut, "No machines in %s. Create one with 'mbctl machines pull IMAGE NAME'.\n", cfg.Paths.Machines)
				return nil
			}
			tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tIMAGE\tYGG ADDRESS\tCREATED")
			for _, in := range infos {
				state := in.State.String()
				if len(in.Missing) > 0 {
					state += " (partial)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Name, state, orDash(in.Image), orDash(in.YggAddress), orDash(formatTime(in.Created)))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
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
	Settings    string `json:"settings,omitempty"`
	Environment string `json:"environment,omitempty"`
}

func newMachinesShowCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a machine's paths, settings, environment and state",
		Example: `  mbctl machines show registry
  mbctl machines show registry --json | jq .state.leader`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, err := machinePaths(f, args[0])
			if err != nil {
				return err
			}
			st, err := f.Prober.Probe(p)
			if err != nil {
				return err
			}
			in, env, err := machine.DescribeEnv(p, st)
			if err != nil {
				return err
			}
			if len(in.Missing) == len(p.Entries()) {
				return fmt.Errorf("machine %s does not exist (see 'mbctl machines list')", p.Name)
			}
			show := machineShow{Info: in, Settings: readOrEmpty(p.Settings), Environment: string(env)}
			if asJSON {
				return writeJSON(f.IO.Out, show)
			}
			return printShow(f.IO.Out, show)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON (settings and environment as text)")
	return cmd
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
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"Name", s.Name}, {"State", state}, {"Image", s.Image}, {"Digest", s.Digest},
		{"Ygg address", s.YggAddress}, {"Template", s.Template}, {"Init mode", s.InitMode},
		{"Created", formatTime(s.Created)},
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

func newMachinesRemoveCmd(f *Factory) *cobra.Command {
	var yes, keepData bool
	cmd := &cobra.Command{
		Use:     "remove NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a stopped machine and its files",
		Long: `Delete machine NAME: its root file system, config dir, storage dir (data
volumes), the nspawn settings link and the machinectl image link. mbctl lists
what it will delete and asks first; --yes skips the question (needed when
there is no terminal).

A running machine is not removed. Symlinks are deleted as links, never
followed; a custom volume dir outside the machine's dirs is kept and named.
Works on the leftovers of a machine whose creation was cut short.`,
		Example: `  mbctl machines remove registry
  mbctl machines remove registry --yes --keep-data`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			return removeMachine(cmd.Context(), f, args[0], yes, keepData)
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&keepData, "keep-data", false, "keep the storage dir (data volumes)")
	return cmd
}

func removeMachine(ctx context.Context, f *Factory, name string, yes, keepData bool) error {
	p, _, err := machinePaths(f, name)
	if err != nil {
		return err
	}
	st, err := f.Prober.Probe(p)
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
	plan, err := machine.PlanRemove(p, keepData)
	if errors.Is(err, machine.ErrNotFound) {
		return fmt.Errorf("machine %s does not exist (see 'mbctl machines list')", name)
	}
	if err != nil {
		return err
	}
	w := f.IO.ErrOut
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
	printEntries(fmt.Sprintf("Removing machine %s deletes:", name), plan.Delete)
	printEntries("Already missing:", plan.Missing)
	printEntries("Kept:", plan.Kept)
	if !yes {
		if !f.IO.IsStdinTTY() {
			return fmt.Errorf("not removing machine %s: no terminal to confirm on; pass --yes", name)
		}
		ok, err := f.prompter().confirm(ctx, fmt.Sprintf("Delete machine %s?", name))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nothing removed")
		}
	}
	if err := plan.Execute(); err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Out, "Removed machine %s.\n", name)
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
