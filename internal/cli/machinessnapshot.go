package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/host/provision"
)

// MachinesSnapshotOptions are the inputs of `machines snapshot`.
type MachinesSnapshotOptions struct {
	MachineDeps
	Now func() time.Time

	Name, Label string
	Volumes     bool
	Delete      bool
	JSON        bool
}

// NewCmdMachinesSnapshot builds `machines snapshot`; runF, if not nil,
// replaces machinesSnapshotRun (tests).
func NewCmdMachinesSnapshot(f *Factory, runF func(context.Context, *MachinesSnapshotOptions) error) *cobra.Command {
	opts := &MachinesSnapshotOptions{MachineDeps: newMachineDeps(f), Now: time.Now}
	cmd := &cobra.Command{
		Use:   "snapshot NAME [LABEL]",
		Short: "Snapshot a machine's root file system and files (btrfs)",
		Long: `Take a snapshot of machine NAME, named LABEL (default: the time, e.g.
20261204-010203): a read-only btrfs snapshot of its root file system and a
copy of its config dir (settings, environment, secrets, config volumes);
with --volumes its storage dir too (a snapshot where it is a btrfs
subvolume, else a copy). 'mbctl machines restore NAME LABEL' goes back to it.

The snapshot of the root file system is atomic and takes milliseconds; it
may be taken while the machine runs, like a power cut would leave it. For a
consistent copy of the data, stop the machine first. A strict machine's
root is its image's, read-only: its snapshot keeps the image root, and its
state is in the config dir and volumes.

Snapshots need the machines dir (paths.machines) on btrfs; elsewhere the
command says so and does nothing. They live in <machines>/.snapshots/NAME
and go with 'mbctl machines remove NAME' (kept with --keep-data).
--delete LABEL deletes one.`,
		Example: `  mbctl machines snapshot db before-upgrade --volumes
  mbctl machines snapshots db
  mbctl machines restore db before-upgrade --volumes
  mbctl machines snapshot --delete db before-upgrade`,
		Args:              rangeArgs(1, 2, "NAME", "[LABEL]"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if len(args) > 1 {
				opts.Label = args[1]
			}
			if opts.Delete && opts.Label == "" {
				return fmt.Errorf("--delete needs the LABEL of the snapshot to delete (see 'mbctl machines snapshots %s')", opts.Name)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesSnapshotRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Volumes, "volumes", false, "also snapshot the storage dir (the data volumes)")
	cmd.Flags().BoolVar(&opts.Delete, "delete", false, "delete snapshot LABEL instead of taking one")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the snapshot (label, created, digest, strict, volumes, path) as JSON")
	return cmd
}

func machinesSnapshotRun(_ context.Context, opts *MachinesSnapshotOptions) error {
	_, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	if opts.Delete {
		if err := provision.DeleteSnapshot(cfg.Paths, opts.Name, opts.Label); err != nil {
			return err
		}
		fmt.Fprintf(opts.IO.Out, "Deleted snapshot %s of machine %s.\n", opts.Label, opts.Name)
		return nil
	}
	s, err := provision.TakeSnapshot(cfg.Paths, opts.Name, opts.Label, opts.Volumes, opts.Now(), opts.Log)
	if err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, s)
	}
	what := "root file system and config dir"
	if s.Volumes {
		what += " and storage dir"
	}
	_, err = fmt.Fprintf(opts.IO.Out, "Snapshot %s of machine %s: its %s, in %s.\nGo back to it with 'mbctl machines restore %s %s'.\n",
		s.Label, opts.Name, what, s.Path, opts.Name, s.Label)
	return err
}

// MachinesSnapshotsOptions are the inputs of `machines snapshots`.
type MachinesSnapshotsOptions struct {
	MachineDeps
	Name string
	JSON bool
}

// NewCmdMachinesSnapshots builds `machines snapshots`; runF, if not nil,
// replaces machinesSnapshotsRun (tests).
func NewCmdMachinesSnapshots(f *Factory, runF func(context.Context, *MachinesSnapshotsOptions) error) *cobra.Command {
	opts := &MachinesSnapshotsOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:   "snapshots NAME",
		Short: "List a machine's snapshots",
		Long: `List machine NAME's snapshots, oldest first: label, when it was taken, the
image digest the machine ran, and whether it holds the volumes.`,
		Example: `  $ mbctl machines snapshots db
  LABEL            CREATED              IMAGE                VOLUMES
  before-upgrade   2026-12-04 01:02:03  sha256:5c30fbb8ae53  yes`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesSnapshotsRun),
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the snapshots as a JSON array")
	return cmd
}

func machinesSnapshotsRun(_ context.Context, opts *MachinesSnapshotsOptions) error {
	_, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	list, err := provision.Snapshots(cfg.Paths, opts.Name)
	if err != nil {
		return err
	}
	if opts.JSON {
		if list == nil {
			list = []provision.Snapshot{}
		}
		return writeJSON(opts.IO.Out, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "machine %s has no snapshots ('mbctl machines snapshot %s' takes one)\n", opts.Name, opts.Name)
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tCREATED\tIMAGE\tVOLUMES")
	for _, s := range list {
		vols := "no"
		if s.Volumes {
			vols = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Label, localTime(s.Created), shortDigest(s.Digest), vols)
	}
	return tw.Flush()
}

// MachinesRestoreOptions are the inputs of `machines restore`.
type MachinesRestoreOptions struct {
	MachineDeps
	Confirm confirmFunc

	Name, Label string
	Volumes     bool
	Yes         bool
	JSON        bool
}

// NewCmdMachinesRestore builds `machines restore`; runF, if not nil,
// replaces machinesRestoreRun (tests).
func NewCmdMachinesRestore(f *Factory, runF func(context.Context, *MachinesRestoreOptions) error) *cobra.Command {
	opts := &MachinesRestoreOptions{MachineDeps: newMachineDeps(f), Confirm: f.prompter().confirm}
	cmd := &cobra.Command{
		Use:   "restore NAME LABEL",
		Short: "Put a stopped machine back to one of its snapshots",
		Long: `Put machine NAME back to its snapshot LABEL: its root file system and config
dir become the snapshot's; with --volumes its storage dir too (otherwise
the data stays as it is now). What they hold now is deleted, so mbctl asks
first (--yes answers). The machine must be stopped. The snapshot itself
stays: restore it again as often as you like.

Every step is journaled: a crash or Ctrl-C midway leaves the machine as it
was before the restore.`,
		Example: `  mbctl machines stop db
  mbctl machines restore db before-upgrade --volumes
  mbctl machines start db`,
		Args:              exactArgs("NAME", "LABEL"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Label = args[0], args[1]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesRestoreRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Volumes, "volumes", false, "also restore the storage dir (the snapshot must have been taken with --volumes)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the restore as JSON")
	return cmd
}

func machinesRestoreRun(ctx context.Context, opts *MachinesRestoreOptions) error {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	if st.Running {
		return fmt.Errorf("machine %s is running: stop it first with 'mbctl machines stop %s'", opts.Name, opts.Name)
	}
	what := "its root file system and config dir"
	if opts.Volumes {
		what += " and its storage dir"
	}
	if err := confirmAction(ctx, opts.IO, opts.Confirm, opts.Yes, "restoring machine "+opts.Name,
		fmt.Sprintf("Replace %s of machine %s with snapshot %s?", what, opts.Name, opts.Label)); err != nil {
		return err
	}
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	res, err := provision.Restore(cfg.Paths, opts.Name, opts.Label, opts.Volumes, opts.Log)
	if err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, res)
	}
	_, err = fmt.Fprintf(opts.IO.Out, "Machine %s is back at snapshot %s (%s): %s restored.\n", opts.Name, opts.Label, localTime(res.Snapshot.Created), what)
	return err
}
