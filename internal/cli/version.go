package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/image/gunzip"
)

func versionString() string {
	bi := buildinfo.Get()
	return fmt.Sprintf("mbctl %s (commit %s, %s, gzip: %s)", bi.Version, bi.Commit, bi.GoVersion, gunzip.Engine)
}

func newVersionCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print mbctl's version, commit, Go version and gzip engine",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				return writeJSON(f.IO.Out, struct {
					buildinfo.Info
					Gzip string `json:"gzip"`
				}{buildinfo.Get(), gunzip.Engine})
			}
			_, err := fmt.Fprintln(f.IO.Out, versionString())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
