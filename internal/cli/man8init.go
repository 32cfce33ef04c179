package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
)

// envInit names the environment variable that overrides machines.init.
const envInit = "MBCTL_INIT"

// locateInit finds the man8s-init and busybox to install into machines:
// $MBCTL_INIT (read with getenv, which may be nil), else machines.init of
// cfg, else the search of initinstall.Locate.
func locateInit(cfg config.Config, getenv func(string) string, log *slog.Logger) (initinstall.Sources, error) {
	cfgInit := cfg.Machines.Init
	from := "machines.init"
	if getenv != nil {
		if v := getenv(envInit); v != "" {
			cfgInit, from = v, "$"+envInit
		}
	}
	src, err := initinstall.Locate(cfgInit, cfg.Machines.Busybox, exec.LookPath)
	if err != nil {
		return src, err
	}
	if src.InitFrom == initinstall.FromConfig {
		src.InitFrom = from
	}
	log.Debug("man8s-init source", "path", src.Init, "from", src.InitFrom, "busybox", src.Busybox)
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
	MadeUsr     bool   `json:"made_usr"`
}

// OCIMan8initOptions are the inputs of `oci man8init`.
type OCIMan8initOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Getenv reads $MBCTL_INIT, which overrides machines.init.
	Getenv func(string) string

	Rootfs string
	JSON   bool
}

// NewCmdOCIMan8init builds `oci man8init`; runF, if not nil, replaces
// ociMan8initRun (tests).
func NewCmdOCIMan8init(f *Factory, runF func(context.Context, *OCIMan8initOptions) error) *cobra.Command {
	opts := &OCIMan8initOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Getenv: f.Getenv}
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

If PATH has no /usr (an image built FROM scratch), an empty /usr is
created: systemd-nspawn refuses to run a tree without one. Nothing else in
the tree changes.

Links in the image never lead outside PATH: a /man8s-init that is not a
directory is replaced by one, and /bin is resolved inside PATH.`,
		Example: `  mbctl oci man8init /var/lib/man8machines/registry
  MBCTL_INIT=./bin/man8s-init mbctl oci man8init --json ./rootfs

  # unpack an image and make it bootable by hand
  mbctl oci download alpine:3.20 ./alpine && mbctl oci man8init ./alpine`,
		Args: exactArgs("PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Rootfs = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return ociMan8initRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was installed, and from where, as JSON")
	return cmd
}

func ociMan8initRun(_ context.Context, opts *OCIMan8initOptions) error {
	if fi, err := os.Stat(opts.Rootfs); err != nil {
		return fmt.Errorf("installing man8s-init: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("installing man8s-init: %s is not a directory: PATH must be a root filesystem", opts.Rootfs)
	}
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	src, err := locateInit(cfg, opts.Getenv, opts.Log)
	if err != nil {
		return fmt.Errorf("installing man8s-init: %w", err)
	}
	res, err := initinstall.Install(opts.Rootfs, src)
	if err != nil {
		return err // names what failed and where
	}
	report := man8initReport{Rootfs: opts.Rootfs, Init: res.Init, InitSource: src.Init, InitFrom: src.InitFrom, ShellLink: res.ShellLink, MadeUsr: res.MadeUsr}
	if res.Busybox != "" {
		report.Busybox, report.BusyboxFrom = res.Busybox, src.Busybox
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, report)
	}
	return printMan8init(opts.IO.Out, opts.IO.ErrOut, report)
}

// printMan8init prints what was installed to out, and a missing busybox as
// a notice to errOut.
func printMan8init(out, errOut io.Writer, r man8initReport) error {
	fmt.Fprintf(out, "installed %s from %s (%s)\n", r.Init, r.InitSource, r.InitFrom)
	if r.Busybox == "" {
		fmt.Fprintln(errOut, "no static busybox found (machines.busybox, PATH): installed no debug shell")
	} else {
		fmt.Fprintf(out, "installed %s from %s\n", r.Busybox, r.BusyboxFrom)
	}
	var err error
	if r.ShellLink {
		_, err = fmt.Fprintf(out, "linked %s -> %s (the image has no shell)\n", initinstall.ShellPath, initinstall.BusyboxPath)
	}
	if r.MadeUsr && err == nil {
		_, err = fmt.Fprintln(out, "created /usr, empty: the image has none, and systemd-nspawn refuses a tree without it")
	}
	return err
}
