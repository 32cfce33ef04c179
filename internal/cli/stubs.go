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
