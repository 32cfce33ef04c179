package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
)

func newConfigCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("config", "Show mbctl's configuration",
		`mbctl reads a TOML file, by default `+config.DefaultPath+` (override with
--config FILE or $`+config.EnvVar+`). Every host path mbctl uses is a key in it.
A missing default file means built-in defaults.`)
	cmd.AddCommand(NewCmdConfigShow(f, nil))
	return cmd
}

// configShowReport is the --json form of `config show`.
type configShowReport struct {
	// File is the configuration file consulted; Found says whether it
	// exists (if not, every value is a default).
	File  string `json:"file"`
	Found bool   `json:"found"`
	// Values are the effective values by section and key, as in the file.
	Values map[string]map[string]any `json:"values"`
	// Sources say, per dotted key, where its value came from: "FILE:LINE"
	// or "default".
	Sources map[string]string `json:"sources"`
}

// ConfigShowOptions are the inputs of `config show`.
type ConfigShowOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Getenv reads the environment variables that override keys.
	Getenv func(string) string

	JSON bool
}

// NewCmdConfigShow builds `config show`; runF, if not nil, replaces
// configShowRun (tests).
func NewCmdConfigShow(f *Factory, runF func(context.Context, *ConfigShowOptions) error) *cobra.Command {
	opts := &ConfigShowOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and where each value came from",
		Long: `Print the effective configuration as TOML. A comment above each key says
what it is for and whether the value is a default or comes from a line of the
configuration file. The output is itself a valid configuration file.

With --json: the file, whether it exists, the values by section and key, and
the source of each dotted key ("FILE:LINE" or "default").`,
		Example: `  mbctl config show
  mbctl --config ./test.toml config show

  # a configuration file to edit, starting from the effective values
  mbctl config show > mbctl.toml

  mbctl config show --json | jq -r .values.paths.cache`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return configShowRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print file, found, values and per-key sources as JSON")
	return cmd
}

func configShowRun(_ context.Context, opts *ConfigShowOptions) error {
	cfg, origin, err := opts.Config()
	if err != nil {
		return err
	}
	if opts.Getenv != nil {
		if v := opts.Getenv(envInit); v != "" {
			fmt.Fprintf(opts.IO.ErrOut, "notice: $%s=%s overrides machines.init\n", envInit, v)
		}
	}
	if !opts.JSON {
		_, err = opts.IO.Out.Write(config.Render(cfg, origin))
		return err
	}
	rep := configShowReport{File: origin.Path, Found: origin.Found, Values: map[string]map[string]any{}, Sources: map[string]string{}}
	for _, e := range config.Entries(cfg, origin) {
		if rep.Values[e.Section] == nil {
			rep.Values[e.Section] = map[string]any{}
		}
		rep.Values[e.Section][e.Key] = e.Value
		rep.Sources[e.Dotted()] = e.Source
	}
	return writeJSON(opts.IO.Out, rep)
}
