package cli

import "github.com/spf13/cobra"

// stubVerb declares a verb whose implementation lands in a later release, so
// that the command tree and its help are complete today.
func stubVerb(use, short, long string, args ...string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  exactArgs(args...),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errNotImplemented
		},
	}
}

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
		stubVerb("run NAME", "Run a machine in the foreground (Ctrl-C stops it)", "", "NAME"),
		stubVerb("start NAME", "Start a machine as a systemd service", "", "NAME"),
		stubVerb("stop NAME", "Stop a running machine", "", "NAME"),
		stubVerb("restart NAME", "Restart a machine", "", "NAME"),
		stubVerb("status NAME", "Show a machine's systemd status", "", "NAME"),
		stubVerb("enable NAME", "Start a machine at boot", "", "NAME"),
		stubVerb("disable NAME", "Do not start a machine at boot", "", "NAME"),
		stubVerb("logs NAME", "Show a machine's logs", "", "NAME"),
		&cobra.Command{
			Use:   "shell NAME [-- CMD ARGS...]",
			Short: "Run a shell or command inside a running machine",
			RunE:  func(*cobra.Command, []string) error { return errNotImplemented },
		},
	)
	return cmd
}

func newHostCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("host", "Check and prepare this host for Man8S",
		`A Man8S host runs systemd-networkd with the machines' bridge and Yggdrasil,
whose subnet gives every machine its stable address.`)
	cmd.AddCommand(
		stubVerb("check", "Check every prerequisite and say how to fix what is missing", ""),
		stubVerb("setup", "Write the bridge's systemd-networkd files and enable forwarding", ""),
	)
	return cmd
}
