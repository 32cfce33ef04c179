// Package cli builds mbctl's command tree. Commands are thin: each parses its
// flags into an options struct and calls into the internal packages, which
// never print, prompt or exit themselves.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Factory holds what every command may need. It is built once per run.
type Factory struct {
	IO     *iostreams.IOStreams
	Getenv func(string) string
	// Geteuid is the effective user id (nil: the process's own); tests
	// pretend not to be root with it.
	Geteuid func() int

	// configPath is the --config flag value.
	configPath string
	verbose    bool

	// Prober finds running machines; the zero value looks at this host.
	Prober machine.Prober
	// Commands runs the host commands mbctl hands work to; nil means the
	// real ones (tests record them instead).
	Commands commands
	prompt   *prompter

	loadOnce sync.Once
	cfg      config.Config
	origin   config.Origin
	cfgErr   error
}

// Config loads the configuration on first use. The file named by --config
// or $MBCTL_CONFIG must exist; the default file may be missing.
func (f *Factory) Config() (config.Config, config.Origin, error) {
	f.loadOnce.Do(func() {
		path := config.Path(f.configPath, f.Getenv)
		required := path != config.DefaultPath
		f.cfg, f.origin, f.cfgErr = config.Load(path, required)
	})
	return f.cfg, f.origin, f.cfgErr
}

// Logger returns the debug/notice logger: text to stderr, debug level with
// -v. Commands may take it before the flags are parsed: the level is read
// when a record is logged.
func (f *Factory) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: verbosity{f}}))
}

// verbosity is the level -v asks for, read at log time.
type verbosity struct{ f *Factory }

func (v verbosity) Level() slog.Level {
	if v.f.verbose {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// usageError marks errors in how mbctl was called (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitStatusError passes on the exit status of a command mbctl ran in the
// foreground (systemd-nspawn, systemctl, ...), which has already spoken.
type exitStatusError struct{ code int }

func (e *exitStatusError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// NewRootCmd returns the mbctl command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "mbctl <group> <verb> [flags]",
		Short: "Run OCI images as systemd-nspawn machines on their own network",
		Long: `mbctl is the command-line tool of Man8S, a container runtime on systemd-nspawn.

It pulls OCI/Docker images from any registry into nspawn machines configured
by plain files, gives every machine its own network namespace with IPv4, IPv6
and a stable Yggdrasil address derived from its name, and runs the app under
man8s-init, a small init that sets up the network and stops the app with the
right signal.

The files are the machine: everything needed to rebuild one lives in its
config dir (` + "`mbctl config show`" + ` prints where that is).`,
		Example: `  # what address will machine "registry" get on this host's Yggdrasil subnet?
  mbctl address get registry

  # the effective configuration and where each value came from
  mbctl config show`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetIn(f.IO.In)

	pf := root.PersistentFlags()
	pf.BoolVarP(&f.verbose, "verbose", "v", false, "log debug messages to stderr")
	pf.StringVar(&f.configPath, "config", "", "configuration file (default $"+config.EnvVar+" or "+config.DefaultPath+")")
	_ = root.MarkPersistentFlagFilename("config", "toml")
	pf.Var(progressFlag{f.IO}, "progress", "how pulls, downloads and upgrades show progress: auto (bars on a terminal, else plain), tty, plain (lines, no control characters) or none")
	_ = root.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions(progressModes(), cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err}
	})

	root.AddGroup(
		&cobra.Group{ID: "main", Title: "Commands:"},
		&cobra.Group{ID: "other", Title: "Other commands:"},
	)
	for _, c := range []*cobra.Command{
		newMachinesCmd(f),
		newOCICmd(f),
		newAddressCmd(f),
		newCacheCmd(f),
		newHostCmd(f),
		newConfigCmd(f),
	} {
		c.GroupID = "main"
		root.AddCommand(c)
	}
	version := newVersionCmd(f)
	version.GroupID = "other"
	root.AddCommand(version)
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	return root
}

// groupCmd returns a command that only holds verbs. Called without a verb it
// prints its help; with an unknown verb it fails with a usage error.
func groupCmd(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " <verb>",
		Short: short,
		Long:  long,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown verb %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
}

// runOnName is the RunE of a command whose one argument is a name (a
// machine's): it sets *name and runs runF when a test gave one, else run.
func runOnName[O any](name *string, opts O, runF, run func(context.Context, O) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		*name = args[0]
		if runF != nil {
			return runF(cmd.Context(), opts)
		}
		return run(cmd.Context(), opts)
	}
}

// exactArgs is cobra.ExactArgs with a usage error that names the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(names) == 0 {
			return usagef("%s takes no arguments (got %d: %s)", cmd.CommandPath(), len(args), strings.Join(args, " "))
		}
		noun := "arguments"
		if len(names) == 1 {
			noun = "argument"
		}
		return usagef("%s takes %d %s: %s (got %d)", cmd.CommandPath(), len(names), noun, strings.Join(names, " "), len(args))
	}
}

// rangeArgs takes min to max arguments, named by names, with a usage
// error that names them.
func rangeArgs(min, max int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && len(args) <= max {
			return nil
		}
		return usagef("%s takes %d to %d arguments: %s (got %d)", cmd.CommandPath(), min, max, strings.Join(names, " "), len(args))
	}
}

// isRoot reports whether mbctl runs as root.
func (f *Factory) isRoot() bool { return f.euid() == 0 }

// euid is the effective user id mbctl runs as.
func (f *Factory) euid() int {
	if f.Geteuid != nil {
		return f.Geteuid()
	}
	return os.Geteuid()
}

// annotationNeedsRoot, on a command, says why it needs root; a failure of
// the command as another user then says so.
const annotationNeedsRoot = "mbctl/needs-root"

// sudoLine is the command line args again, under sudo.
func sudoLine(args []string) string {
	return strings.Join(append([]string{"mbctl"}, args...), " ")
}

// Main runs mbctl with args and returns the process exit status.
func Main(args []string, ios *iostreams.IOStreams) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// MBCTL_CPUPROFILE=FILE writes a CPU profile, for performance work.
	if path := os.Getenv("MBCTL_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			defer f.Close()
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	return run(ctx, args, &Factory{IO: ios, Getenv: os.Getenv})
}

// run executes one mbctl command line with f and returns the exit status.
func run(ctx context.Context, args []string, f *Factory) int {
	ios := f.IO
	root := NewRootCmd(f)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var es *exitStatusError
	if errors.As(err, &es) {
		// The command said what happened itself (systemctl's "Access
		// denied"); a user who is not root learns why.
		if why := cmd.Annotations[annotationNeedsRoot]; why != "" && !f.isRoot() {
			fmt.Fprintf(ios.ErrOut, "mbctl: %s needs root (%s), and mbctl runs as user %d: run it as root: sudo %s\n",
				cmd.CommandPath(), why, f.euid(), sudoLine(args))
		}
		return es.code
	}
	fmt.Fprintf(ios.ErrOut, "mbctl: %v\n", err)
	if errors.Is(err, fs.ErrPermission) && !f.isRoot() {
		why := cmd.Annotations[annotationNeedsRoot]
		if why == "" {
			why = "machines, their files, the image cache and the host's network files belong to root"
		}
		fmt.Fprintf(ios.ErrOut, "mbctl: %s needs root (%s), and mbctl runs as user %d: run it as root: sudo %s\n",
			cmd.CommandPath(), why, f.euid(), sudoLine(args))
		return exitError
	}
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintf(ios.ErrOut, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// isCobraUsageError recognises the errors cobra makes itself before a
// command runs (they are plain errors without a type).
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}
