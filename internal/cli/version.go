package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/image/gunzip"
)

// versionString is the one-line version of the running mbctl (also
// `mbctl --version`).
func versionString() string {
	return formatVersion(buildinfo.Get(), gunzip.Engine)
}

func formatVersion(bi buildinfo.Info, gzip string) string {
	return fmt.Sprintf("mbctl %s (commit %s, %s, gzip: %s)", bi.Version, bi.Commit, bi.GoVersion, gzip)
}

// versionReport is the --json form of `version`.
type versionReport struct {
	buildinfo.Info
	Gzip string `json:"gzip"`
}

// VersionOptions are the inputs of `version`.
type VersionOptions struct {
	IO *iostreams.IOStreams
	// Build and Gzip describe the running binary; tests fake them.
	Build buildinfo.Info
	Gzip  string

	JSON bool
}

// NewCmdVersion builds `version`; runF, if not nil, replaces versionRun
// (tests).
func NewCmdVersion(f *Factory, runF func(context.Context, *VersionOptions) error) *cobra.Command {
	opts := &VersionOptions{IO: f.IO, Build: buildinfo.Get(), Gzip: gunzip.Engine}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print mbctl's version, commit, Go version and gzip engine",
		Long: `Print the version and commit mbctl was built from, the Go release that
built it and its gzip engine: isa-l, or the slower pure-Go klauspost/compress.
The same line as 'mbctl --version'.`,
		Example: `  $ mbctl version
  mbctl v0.3.0 (commit 0c6b8ab, go1.26.0, gzip: isa-l)

  mbctl version --json | jq -r .commit`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return versionRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print version, commit, go_version and gzip as JSON")
	return cmd
}

func versionRun(_ context.Context, opts *VersionOptions) error {
	if opts.JSON {
		return writeJSON(opts.IO.Out, versionReport{opts.Build, opts.Gzip})
	}
	_, err := fmt.Fprintln(opts.IO.Out, formatVersion(opts.Build, opts.Gzip))
	return err
}

// newVersionCmd is the `version` of the command tree.
func newVersionCmd(f *Factory) *cobra.Command { return NewCmdVersion(f, nil) }
