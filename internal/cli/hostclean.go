package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/provision"
)

// HostCleanOptions are the inputs of `host clean`.
type HostCleanOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger

	DryRun bool
	JSON   bool
}

// hostCleanReport is the --json form of `host clean`.
type hostCleanReport struct {
	DryRun bool            `json:"dry_run"`
	Dead   []hostCleanDead `json:"dead_runs"`
	// Orphans are staging dirs that no run's journal names.
	Orphans []string `json:"orphans"`
	Bytes   int64    `json:"orphan_bytes"`
}

type hostCleanDead struct {
	Journal string   `json:"journal"`
	What    string   `json:"what"`
	PID     int      `json:"pid"`
	Paths   []string `json:"paths"`
	Error   string   `json:"error,omitempty"`
}

// NewCmdHostClean builds `host clean`; runF, if not nil, replaces
// hostCleanRun (tests).
func NewCmdHostClean(f *Factory, runF func(context.Context, *HostCleanOptions) error) *cobra.Command {
	opts := &HostCleanOptions{IO: f.IO, Config: f.Config, Log: f.Logger()}
	cmd := &cobra.Command{
		Use:   "clean",
		Short: "Take back what killed mbctl runs left behind",
		Long: `Take back what mbctl runs that died (kill -9, OOM, power loss) left: every
run that creates a machine or downloads an image journals what it makes in
paths.scratch/journals before it makes it and holds a lock on the journal
while it lives. A journal whose lock is free belongs to a dead run: its
staging dirs and half-installed dirs and links are removed, so a machine is
either absent or complete. Staging dirs in the machines, configs and storage
dirs that no live run names (left by an older mbctl) are removed too.

Runs that are alive are never touched. 'machines pull', 'oci download' and
'cache prune' do the same on their own before they start.`,
		Example: `  sudo mbctl host clean --dry-run
  sudo mbctl host clean --json | jq '.dead_runs[].what'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return hostCleanRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "only say what would be taken back")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the dead runs, their paths and the orphan staging dirs as JSON")
	return cmd
}

func hostCleanRun(_ context.Context, opts *HostCleanOptions) error {
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	rep, err := provision.Clean(cfg.Paths, opts.DryRun)
	out := hostCleanReport{DryRun: opts.DryRun, Dead: []hostCleanDead{}, Orphans: rep.Orphans, Bytes: rep.Bytes}
	if out.Orphans == nil {
		out.Orphans = []string{}
	}
	for _, d := range rep.Dead {
		hd := hostCleanDead{Journal: d.Journal, What: d.What, PID: d.PID, Paths: []string{}}
		for _, r := range d.Records {
			if r.Path != "" {
				hd.Paths = append(hd.Paths, r.Path)
			}
		}
		if d.Err != nil {
			hd.Error = d.Err.Error()
		}
		out.Dead = append(out.Dead, hd)
	}
	if opts.JSON {
		if jerr := writeJSON(opts.IO.Out, out); jerr != nil {
			return jerr
		}
		return err
	}
	printClean(opts.IO.Out, out)
	return err
}

func printClean(w io.Writer, r hostCleanReport) {
	verb := "took back"
	if r.DryRun {
		verb = "would take back"
	}
	if len(r.Dead) == 0 && len(r.Orphans) == 0 {
		fmt.Fprintln(w, "nothing to clean: no dead runs, no orphan staging dirs")
		return
	}
	for _, d := range r.Dead {
		fmt.Fprintf(w, "%s the dead run %q (pid %d, %s): %d paths\n", verb, d.What, d.PID, d.Journal, len(d.Paths))
		for _, p := range d.Paths {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	for _, p := range r.Orphans {
		fmt.Fprintf(w, "%s the orphan staging dir %s\n", verb, p)
	}
	if r.Bytes > 0 {
		fmt.Fprintf(w, "orphans: %s\n", humanBytes(r.Bytes))
	}
}

// cleanDeadRuns is what pull, download and prune do before they start:
// Clean, with a notice on stderr for what it took back. A failure is only
// a warning: it must not stop the command the user asked for.
func cleanDeadRuns(ios *iostreams.IOStreams, log *slog.Logger, dirs config.Paths) {
	rep, err := provision.Clean(dirs, false)
	for _, d := range rep.Dead {
		fmt.Fprintf(ios.ErrOut, "took back what the dead run %q (pid %d) left (%d paths)\n", d.What, d.PID, len(d.Records))
	}
	if len(rep.Orphans) > 0 {
		fmt.Fprintf(ios.ErrOut, "removed %d orphan staging dirs (%s)\n", len(rep.Orphans), humanBytes(rep.Bytes))
	}
	if err != nil {
		log.Warn("cleaning up after dead runs failed; see 'mbctl host clean'", "err", err)
	}
}
