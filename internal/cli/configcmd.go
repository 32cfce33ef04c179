package cli

import (
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/config"
)

func newConfigCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("config", "Show mbctl's configuration",
		`mbctl reads a TOML file, by default `+config.DefaultPath+` (override with
--config FILE or $`+config.EnvVar+`). Every host path mbctl uses is a key in it.
A missing default file means built-in defaults.`)
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and where each value came from",
		Long: `Print the effective configuration as TOML. A comment above each key says
what it is for and whether the value is a default or comes from a line of the
configuration file. The output is itself a valid configuration file.`,
		Example: `  mbctl config show
  mbctl --config ./test.toml config show`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, origin, err := f.Config()
			if err != nil {
				return err
			}
			_, err = f.IO.Out.Write(config.Render(cfg, origin))
			return err
		},
	})
	return cmd
}
