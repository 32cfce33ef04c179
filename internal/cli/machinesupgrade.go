package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/host/yggadmin"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
)

// MachinesUpgradeOptions are the inputs of `machines upgrade`.
type MachinesUpgradeOptions struct {
	MachineDeps
	Commands commands
	// Getenv reads $MBCTL_INIT and mbctl's fault hook.
	Getenv func(string) string
	Ask    askFunc

	Name     string
	Image    string
	Volumes  []string
	InitMode string
	Platform string
	Restart  bool
	DryRun   bool
	Yes      bool
	Quiet    bool
	JSON     bool
	// NoProbe skips the init probe; RunProbe runs it (probe.Run; nil:
	// none), as at pull.
	NoProbe  bool
	RunProbe func(context.Context, probe.Input, probe.Config) (*probe.Findings, error)
	// adopt: the machine's rootfs is gone and its kept config dir is
	// taken over ('machines pull --adopt').
	adopt bool
}

// NewCmdMachinesUpgrade builds `machines upgrade`; runF, if not nil,
// replaces machinesUpgradeRun (tests).
func NewCmdMachinesUpgrade(f *Factory, runF func(context.Context, *MachinesUpgradeOptions) error) *cobra.Command {
	opts := &MachinesUpgradeOptions{MachineDeps: newMachineDeps(f), Commands: f.commands(), Getenv: f.Getenv, Ask: f.prompter().ask, RunProbe: probe.Run}
	cmd := &cobra.Command{
		Use:   "upgrade NAME",
		Short: "Take a machine to the newest image of its reference, keeping its config and data",
		Long: `Upgrade machine NAME: resolve its image reference (MAN8S_OCI_IMAGE_URL, or
--image) to a digest, and when it moved, unpack the new image beside the
root file system (the cache makes that the download of the changed layers
only), install man8s-init into it and merge the new image's config into the
machine's files:

  - a value you never changed follows the image (the command, StopSignal,
    WorkingDirectory, User, the image's variables, ...);
  - a value you changed stays yours, and so do your comments and keys;
  - keys the new image adds are added; a bind is never removed.

mbctl knows what you changed because it keeps what it generated in the
config dir (.mbctl/). The diff of both files is printed; --dry-run prints
only that and changes nothing (the layers stay in the cache).

Volumes the new image declares are asked for, as at pull (--volume, --yes);
existing volumes and the storage dir are never touched. Then the new root
file system and files are swapped in, each step journaled: a crash leaves
the old machine or the new one, never a mix. The old ones stay as the
rollback point ('mbctl machines rollback NAME').

A running machine keeps running on its old files until it restarts:
--restart restarts it after the swap (systemd-nspawn@NAME); without it a
running machine is refused.`,
		Example: `  mbctl machines upgrade db --dry-run
  mbctl machines upgrade db --restart
  mbctl machines upgrade db --image postgres:17 --volume /var/log/postgresql=data`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesUpgradeRun),
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Image, "image", "", "follow this image reference from now on (default: the machine's own)")
	fl.StringArrayVar(&opts.Volumes, "volume", nil, "where a new volume lives: PATH=config|data|skip|/abs/host/dir (repeatable)")
	fl.StringVar(&opts.InitMode, "init-mode", string(imageinit.Auto), "auto, supervise or exec-pid1")
	fl.StringVar(&opts.Platform, "platform", "", "image platform os/arch[/variant] (default: this host's)")
	fl.BoolVar(&opts.Restart, "restart", false, "restart a running machine after the swap")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print what would change, change nothing")
	fl.BoolVar(&opts.NoProbe, "no-probe", false, "do not probe how the new entrypoint behaves as PID 1: the init mode follows its name alone")
	fl.BoolVarP(&opts.Yes, "yes", "y", false, "never ask: new volumes without --volume become data volumes")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "no progress output")
	fl.BoolVar(&opts.JSON, "json", false, "print the upgrade as one JSON object (no progress bars)")
	_ = cmd.RegisterFlagCompletionFunc("init-mode", cobra.FixedCompletions(initModeNames(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// machinesUpgradeReport is the --json form of `machines upgrade`.
type machinesUpgradeReport struct {
	Name         string                `json:"name"`
	Image        string                `json:"image"`
	From         string                `json:"from"`
	To           string                `json:"to"`
	UpToDate     bool                  `json:"up_to_date"`
	DryRun       bool                  `json:"dry_run"`
	Applied      bool                  `json:"applied"`
	Restarted    bool                  `json:"restarted"`
	Changes      []machinefiles.Change `json:"changes"`
	SettingsDiff string                `json:"settings_diff,omitempty"`
	EnvDiff      string                `json:"env_diff,omitempty"`
	NewVolumes   []machine.Volume      `json:"new_volumes,omitempty"`
	GuessedBase  string                `json:"guessed_base,omitempty"`
	InitMode     string                `json:"init_mode,omitempty"`
	Seconds      float64               `json:"duration_seconds"`
}

func machinesUpgradeRun(ctx context.Context, opts *MachinesUpgradeOptions) error {
	up, err := upgradeMachine(ctx, opts)
	if err != nil {
		return err
	}
	rep := &up.report
	if rep.UpToDate {
		if opts.JSON {
			return writeJSON(opts.IO.Out, rep)
		}
		fmt.Fprintf(opts.IO.Out, "Machine %s is up to date: %s is still %s.\n", rep.Name, rep.Image, rep.From)
		return nil
	}
	if rep.Applied && up.running && opts.Restart {
		if err := restartMachine(ctx, opts.MachineDeps, opts.Commands, rep.Name); err != nil {
			return fmt.Errorf("machine %s is upgraded, but restarting it failed: %w (go back with 'mbctl machines rollback %s --restart')", rep.Name, err, rep.Name)
		}
		rep.Restarted = true
	}
	rep.Seconds = time.Since(up.start).Seconds()
	if opts.JSON {
		return writeJSON(opts.IO.Out, rep)
	}
	return printUpgrade(opts.IO.Out, *rep, up.reused)
}

// upgraded is what upgradeMachine did.
type upgraded struct {
	report machinesUpgradeReport
	// reused are the new volumes' dirs that existed already.
	reused []string
	// running tells that the machine ran when the upgrade began: it runs
	// on its old files until it is restarted.
	running bool
	start   time.Time
}

// upgradeMachine is machines upgrade up to the restart, which is left to
// the caller (machinesUpgradeRun, or auto-update, which also checks that
// the machine comes up); it prints nothing on stdout. An up-to-date
// machine is reported, not an error.
func upgradeMachine(ctx context.Context, opts *MachinesUpgradeOptions) (*upgraded, error) {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return nil, err
	}
	// An upgrade killed earlier is rolled back first.
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	mode, err := imageinit.ParseMode(opts.InitMode)
	if err != nil {
		return nil, usagef("--init-mode: %v", err)
	}
	answered, order, err := parseVolumeFlags(opts.Volumes, p, opts.adopt)
	if err != nil {
		return nil, err
	}
	if !opts.adopt {
		if p, err = opts.existing(opts.Name); err != nil {
			return nil, err
		}
	}
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	settings, err := unitfile.ReadFile(p.Settings)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	ref := opts.Image
	if ref == "" {
		if ref = strings.TrimSpace(valueOrEmpty(env, man8env.KeyImageURL)); ref == "" {
			return nil, fmt.Errorf("machine %s: %s has no %s: pass --image REF", p.Name, p.Env, man8env.KeyImageURL)
		}
	}
	current := valueOrEmpty(env, man8env.KeyDigest)
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return nil, err
	}
	if st.Running && !opts.DryRun {
		if err := restartable(opts.Restart, opts.Commands, p.Name, "upgrade"); err != nil {
			return nil, err
		}
	}

	im, err := resolveImage(ctx, cfg, opts.Log, ref, opts.Platform)
	if err != nil {
		return nil, err
	}
	rep := machinesUpgradeReport{Name: p.Name, Image: ref, From: current, To: im.Digest.String(), DryRun: opts.DryRun}
	if im.Digest.String() == current && opts.Image == "" && !opts.adopt {
		rep.UpToDate = true
		return &upgraded{report: rep, running: st.Running}, nil
	}
	uo := provision.UpgradeOptions{
		Name: p.Name, Dirs: cfg.Paths, Bridge: cfg.Network.Bridge, Uplink: cfg.Network.Uplink, Image: im, Ref: ref, Mode: mode,
		Version: buildinfo.Get().Version, Log: opts.Log, DryRun: opts.DryRun, Adopt: opts.adopt,
		BeforeStep: faultPause(ctx, opts.Getenv, opts.IO.ErrOut),
	}
	if !provision.HasBase(p) && current != "" {
		// Made by an mbctl before upgrades: the old image's config gives
		// what mbctl wrote then.
		if old, err := resolveImage(ctx, cfg, opts.Log, pinned(valueOrEmpty(env, man8env.KeyImageURL), current), opts.Platform); err == nil {
			uo.Base = old
		} else {
			opts.Log.Warn("the machine's old image is gone: every value of its files counts as yours", "err", err)
		}
	}
	// The new image's volumes the machine does not bind yet.
	have := map[string]bool{}
	for _, key := range []string{"Bind", "BindReadOnly"} {
		for _, v := range settings.GetAll("Files", key) {
			if _, cont, err := machine.ParseBind(v); err == nil {
				have[cont] = true
			}
		}
	}
	var fresh []string
	for _, v := range imageVolumes(opts.Log, im) {
		if !have[v] {
			fresh = append(fresh, v)
		}
	}
	ask := &MachinesPullOptions{IO: opts.IO, Ask: opts.Ask, Yes: opts.Yes}
	if uo.Volumes, err = chooseVolumes(ctx, ask, p, fresh, answered, order); err != nil {
		return nil, err
	}
	if subnet, source, err := yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix); err == nil {
		uo.Subnet = subnet
		opts.Log.Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
	} else {
		opts.Log.Debug("host yggdrasil subnet unknown: the machine keeps its address", "err", err)
	}
	if uo.Init, err = locateInit(cfg, opts.Getenv, opts.Log); err != nil {
		return nil, err
	}
	if uo.Cache, err = cache.OpenWith(cfg.Paths.Cache, cache.Options{Log: opts.Log}); err != nil {
		return nil, err
	}
	start := time.Now()
	progress := newPullProgress(opts.IO, opts.Quiet, opts.JSON)
	uo.Pull = pull.Options{Progress: progress, Log: opts.Log}
	if !opts.NoProbe && opts.RunProbe != nil {
		uo.Probe = func(ctx context.Context, in probe.Input) (*probe.Findings, error) {
			progress.Phase("probing how the entrypoint behaves as PID 1")
			return opts.RunProbe(ctx, in, probe.Config{Init: uo.Init, Log: opts.Log})
		}
	}
	uo.BeforeStep = withPhases(progress, uo.BeforeStep)
	res, err := provision.Upgrade(ctx, uo)
	progress.Done(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted: machine %s is as it was", p.Name)
		}
		return nil, fmt.Errorf("upgrading machine %s: %w (the machine is as it was)", p.Name, err)
	}
	rep.Applied, rep.Changes, rep.SettingsDiff, rep.EnvDiff = res.Applied, res.Changes, res.SettingsDiff, res.EnvDiff
	rep.NewVolumes, rep.GuessedBase, rep.InitMode = res.NewVolumes, res.GuessedBase, string(res.Mode)
	return &upgraded{report: rep, reused: res.ReusedVolumes, running: st.Running, start: start}, nil
}

// restartable says whether a running machine may be changed by verb
// ("upgrade", "roll back") and restarted after: only with --restart, and
// only through systemd (a foreground 'machines run' cannot be restarted).
func restartable(restart bool, cmds commands, name, verb string) error {
	if !restart {
		return fmt.Errorf("machine %s is running: pass --restart to restart it after the swap (or stop it first)", name)
	}
	if !cmds.Host().Systemd {
		return fmt.Errorf("machine %s runs in the foreground ('mbctl machines run'): stop it, %s, and run it again", name, verb)
	}
	return nil
}

// restartMachine restarts machine name through systemd.
func restartMachine(ctx context.Context, d MachineDeps, cmds commands, name string) error {
	argv, err := machine.ServiceCommand(machine.VerbRestart, name)
	if err != nil {
		return err
	}
	return d.runForeground(ctx, cmds, argv)
}

func valueOrEmpty(f *envfile.File, k string) string { v, _ := f.Get(k); return v }

// pinned returns ref pinned to digest.
func pinned(ref, digest string) string {
	base, _, _ := strings.Cut(ref, "@")
	return base + "@" + digest
}

func printUpgrade(w io.Writer, r machinesUpgradeReport, reused []string) error {
	if r.GuessedBase != "" {
		fmt.Fprintf(w, "Note: %s.\n", r.GuessedBase)
	}
	for _, d := range []string{r.SettingsDiff, r.EnvDiff} {
		if d != "" {
			fmt.Fprint(w, d)
		}
	}
	if len(r.Changes) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "Changes:")
		for _, c := range r.Changes {
			fmt.Fprintf(tw, "  %s\n", c)
		}
		tw.Flush()
	}
	for _, v := range r.NewVolumes {
		note := ""
		if slices.Contains(reused, v.Host) {
			note = " (its dir exists: bound again as it is)"
		}
		fmt.Fprintf(w, "New volume %s: %s %s%s\n", v.Path, v.Kind, v.Host, note)
	}
	switch {
	case r.DryRun:
		fmt.Fprintf(w, "Machine %s would go from %s to %s; nothing changed (--dry-run).\n", r.Name, orDash(r.From), r.To)
	case r.Restarted:
		fmt.Fprintf(w, "Upgraded machine %s from %s to %s and restarted it. Go back with 'mbctl machines rollback %s --restart'.\n", r.Name, orDash(r.From), r.To, r.Name)
	default:
		fmt.Fprintf(w, "Upgraded machine %s from %s to %s. Go back with 'mbctl machines rollback %s'.\n", r.Name, orDash(r.From), r.To, r.Name)
	}
	return nil
}

// MachinesRollbackOptions are the inputs of `machines rollback`.
type MachinesRollbackOptions struct {
	MachineDeps
	Commands commands
	Name     string
	Restart  bool
	JSON     bool
}

// NewCmdMachinesRollback builds `machines rollback`; runF, if not nil,
// replaces machinesRollbackRun (tests).
func NewCmdMachinesRollback(f *Factory, runF func(context.Context, *MachinesRollbackOptions) error) *cobra.Command {
	opts := &MachinesRollbackOptions{MachineDeps: newMachineDeps(f), Commands: f.commands()}
	cmd := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Go back to a machine's root file system and files before its last upgrade",
		Long: `Swap machine NAME's root file system and files (container.nspawn,
man8env.env) with those it had before its last 'mbctl machines upgrade':
one step back. The data (storage dir, volumes) is not touched, so an app
that migrated its data on the upgrade must be able to read it. Running
rollback again goes forward again.

A running machine needs --restart (restarted after the swap).`,
		Example:           `  mbctl machines rollback db --restart`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesRollbackRun),
	}
	cmd.Flags().BoolVar(&opts.Restart, "restart", false, "restart a running machine after the swap")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the rollback as JSON")
	return cmd
}

func machinesRollbackRun(ctx context.Context, opts *MachinesRollbackOptions) error {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	if p, err = opts.existing(opts.Name); err != nil {
		return err
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	if st.Running {
		if err := restartable(opts.Restart, opts.Commands, p.Name, "roll back"); err != nil {
			return err
		}
	}
	res, err := provision.Rollback(cfg.Paths, p.Name, opts.Log)
	if err != nil {
		return err
	}
	restarted := false
	if st.Running {
		if err := restartMachine(ctx, opts.MachineDeps, opts.Commands, p.Name); err != nil {
			return fmt.Errorf("machine %s is rolled back, but restarting it failed: %w", p.Name, err)
		}
		restarted = true
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, struct {
			*provision.RolledBack
			Restarted bool `json:"restarted"`
		}{res, restarted})
	}
	fmt.Fprintf(opts.IO.Out, "Rolled machine %s back from %s to %s%s. 'mbctl machines rollback %s' goes forward again.\n",
		p.Name, orDash(res.From), orDash(res.To), map[bool]string{true: " and restarted it", false: ""}[restarted], p.Name)
	return nil
}

// MachinesRebuildOptions are the inputs of `machines rebuild`.
type MachinesRebuildOptions struct {
	MachineDeps
	Getenv func(string) string

	Name     string
	Platform string
	Quiet    bool
	JSON     bool
}

// NewCmdMachinesRebuild builds `machines rebuild`; runF, if not nil,
// replaces machinesRebuildRun (tests).
func NewCmdMachinesRebuild(f *Factory, runF func(context.Context, *MachinesRebuildOptions) error) *cobra.Command {
	opts := &MachinesRebuildOptions{MachineDeps: newMachineDeps(f), Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Make a machine's root file system again from its config dir",
		Long: `Make machine NAME's root file system again from its config dir alone: the
image at the exact digest its man8env.env records (MAN8S_OCI_IMAGE_URL at
MAN8S_OCI_IMAGE_DIGEST: the reference alone may have moved), with
man8s-init installed, and the settings and machinectl links where they are
missing. The files, the storage dir and the volumes are not touched.

This is what to do after moving a config dir and a storage dir to a new
host, or after breaking the root file system. A running machine is refused.`,
		Example: `  # on the new host, after copying /var/lib/man8s/configs/db and .../storage/db
  mbctl machines rebuild db`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesRebuildRun),
	}
	cmd.Flags().StringVar(&opts.Platform, "platform", "", "image platform os/arch[/variant] (default: this host's)")
	cmd.Flags().BoolVarP(&opts.Quiet, "quiet", "q", false, "no progress output")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the rebuild as JSON (no progress bars)")
	return cmd
}

func machinesRebuildRun(ctx context.Context, opts *MachinesRebuildOptions) error {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		return fmt.Errorf("machine %s cannot be rebuilt without its env file: %w", p.Name, err)
	}
	ref, digest := valueOrEmpty(env, man8env.KeyImageURL), valueOrEmpty(env, man8env.KeyDigest)
	if ref == "" || digest == "" {
		return fmt.Errorf("machine %s: %s lacks %s or %s, which name the image to rebuild from", p.Name, p.Env, man8env.KeyImageURL, man8env.KeyDigest)
	}
	st, err := opts.Prober.Probe(p)
	if err != nil {
		return err
	}
	if st.Running {
		return fmt.Errorf("machine %s is running: stop it first with 'mbctl machines stop %s'", p.Name, p.Name)
	}
	im, err := resolveImage(ctx, cfg, opts.Log, pinned(ref, digest), opts.Platform)
	if err != nil {
		return err
	}
	src, err := locateInit(cfg, opts.Getenv, opts.Log)
	if err != nil {
		return err
	}
	c, err := cache.OpenWith(cfg.Paths.Cache, cache.Options{Log: opts.Log})
	if err != nil {
		return err
	}
	progress := newPullProgress(opts.IO, opts.Quiet, opts.JSON)
	res, err := provision.Rebuild(ctx, provision.RebuildOptions{
		Name: p.Name, Dirs: cfg.Paths, Image: im, Cache: c, Init: src, Log: opts.Log,
		Pull:       pull.Options{Progress: progress, Log: opts.Log},
		BeforeStep: withPhases(progress, faultPause(ctx, opts.Getenv, opts.IO.ErrOut)),
	})
	progress.Done(err == nil)
	if err != nil {
		return fmt.Errorf("rebuilding machine %s: %w (the machine is as it was)", p.Name, err)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, struct {
			*provision.Rebuilt
			Image  string `json:"image"`
			Digest string `json:"digest"`
		}{res, ref, digest})
	}
	fmt.Fprintf(opts.IO.Out, "Rebuilt machine %s from %s at %s", p.Name, ref, digest)
	if res.Replaced {
		fmt.Fprint(opts.IO.Out, " (its old root file system is deleted)")
	}
	fmt.Fprintln(opts.IO.Out, ".")
	for _, l := range res.Links {
		fmt.Fprintf(opts.IO.Out, "Made the missing link %s.\n", l)
	}
	return nil
}
