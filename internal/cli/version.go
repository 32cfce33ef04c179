package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
)

func versionString() string {
	bi := buildinfo.Get()
	return fmt.Sprintf("mbctl %s (commit %s, %s)", bi.Version, bi.Commit, bi.GoVersion)
}

func newVersionCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print mbctl's version, commit and Go version",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				return writeJSON(f.IO.Out, buildinfo.Get())
			}
			_, err := fmt.Fprintln(f.IO.Out, versionString())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
