package cli

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/provision/initinstall"
)

// envInit names the environment variable that overrides machines.init.
const envInit = "MBCTL_INIT"

// locateInit finds the man8s-init and busybox to install into machines:
// $MBCTL_INIT, else machines.init, else the search of initinstall.Locate.
func locateInit(f *Factory) (initinstall.Sources, error) {
	cfg, _, err := f.Config()
	if err != nil {
		return initinstall.Sources{}, err
	}
	cfgInit := cfg.Machines.Init
	from := "machines.init"
	if v := f.Getenv(envInit); v != "" {
		cfgInit, from = v, "$"+envInit
	}
	src, err := initinstall.Locate(cfgInit, cfg.Machines.Busybox, exec.LookPath)
	if err != nil {
		return src, err
	}
	if src.InitFrom == initinstall.FromConfig {
		src.InitFrom = from
	}
	f.Logger().Debug("man8s-init source", "path", src.Init, "from", src.InitFrom, "busybox", src.Busybox)
	return src, nil
}

// man8initReport is the --json form of `oci man8init`.
type man8initReport struct {
	Rootfs      string `json:"rootfs"`
	Init        string `json:"init"`
	InitSource  string `json:"init_source"`
	InitFrom    string `json:"init_from"`
	Busybox     string `json:"busybox,omitempty"`
	BusyboxFrom string `json:"busybox_source,omitempty"`
	ShellLink   bool   `json:"shell_link"`
}

func newOCIMan8initCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "man8init PATH",
		Short: "Install man8s-init into the root filesystem at PATH",
		Long: `Install man8s-init, the machines' init, at /man8s-init/man8s-init in the root
filesystem at PATH, and a static busybox at /man8s-init/busybox as a shell for
debugging. If the image has no /bin/sh, /bin/sh becomes a link to that busybox.
An earlier install is replaced atomically (each file is written beside the
old one and renamed over it), so this is safe while the machine runs.

The init installed is the first that exists of: $MBCTL_INIT or machines.init
in the configuration; man8s-init beside mbctl; PREFIX/lib/man8s/man8s-init
(where 'make install' puts it); mbctl itself, which runs as man8s-init when
started under that name. It must be statically linked. The busybox is
machines.busybox, else busybox on PATH, if statically linked; without one
only the init is installed.

Links in the image never lead outside PATH: a /man8s-init that is not a
directory is replaced by one, and /bin is resolved inside PATH.`,
		Example: `  mbctl oci man8init /var/lib/man8machines/registry
  MBCTL_INIT=./bin/man8s-init mbctl oci man8init --json ./rootfs`,
		Args: exactArgs("PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rootfs := args[0]
			if fi, err := os.Stat(rootfs); err != nil {
				return fmt.Errorf("installing man8s-init: %w", err)
			} else if !fi.IsDir() {
				return fmt.Errorf("installing man8s-init: %s is not a directory", rootfs)
			}
			src, err := locateInit(f)
			if err != nil {
				return fmt.Errorf("installing man8s-init: %w", err)
			}
			res, err := initinstall.Install(rootfs, src)
			if err != nil {
				return err
			}
			report := man8initReport{Rootfs: rootfs, Init: res.Init, InitSource: src.Init, InitFrom: src.InitFrom, ShellLink: res.ShellLink}
			if res.Busybox != "" {
				report.Busybox, report.BusyboxFrom = res.Busybox, src.Busybox
			}
			if asJSON {
				return writeJSON(f.IO.Out, report)
			}
			return printMan8init(f, report)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was installed, and from where, as JSON")
	return cmd
}

func printMan8init(f *Factory, r man8initReport) error {
	out := f.IO.Out
	fmt.Fprintf(out, "installed %s from %s (%s)\n", r.Init, r.InitSource, r.InitFrom)
	if r.Busybox == "" {
		fmt.Fprintln(f.IO.ErrOut, "no static busybox found (machines.busybox, PATH): installed no debug shell")
	} else {
		fmt.Fprintf(out, "installed %s from %s\n", r.Busybox, r.BusyboxFrom)
	}
	if r.ShellLink {
		fmt.Fprintf(out, "linked %s -> %s (the image has no shell)\n", initinstall.ShellPath, initinstall.BusyboxPath)
	}
	return nil
}
