package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/yggadmin"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

type machinesPullOptions struct {
	Image, Name string
	Template    string
	Volumes     []string
	InitMode    string
	Platform    string
	Yes, Quiet  bool
}

func newMachinesPullCmd(f *Factory) *cobra.Command {
	var o machinesPullOptions
	cmd := &cobra.Command{
		Use:   "pull IMAGE NAME",
		Short: "Create machine NAME from an OCI image",
		Long: `Create machine NAME from IMAGE: download and unpack the image as the
machine's root file system, ask where each of the image's volumes should
live, write the machine's settings (container.nspawn) and environment
(man8env.env), and install man8s-init.

Volumes: for each volume the image declares, choose
  config   <configs>/NAME/<volume path>  (configuration, kept with the machine's files)
  data     <storage>/NAME/<volume path>  (data)
  custom   a host dir of your choice, which must not exist yet
  skip     not mounted; the content stays in the root file system
The image's content at that path is copied into the new dir, keeping owners,
modes, links and xattrs, and the dir is bound into the machine with :idmap.
--volume PATH=config|data|skip|/host/dir answers without asking (also for a
path the image does not declare); --yes answers "data" for the rest. Without
a terminal every volume must be answered by a flag.

Init mode: man8s-init supervises the app as PID 2 ("supervise"), unless the
image brings its own init that insists on PID 1 (s6-overlay, systemd), which
man8s-init then execs after setting up ("exec-pid1"). "auto" detects it.

Nothing is left behind on an error or Ctrl-C: every dir and link this run
created is removed again.`,
		Example: `  mbctl machines pull registry:2 Man8Registry --volume /var/lib/registry=data
  mbctl machines pull --yes nginx:1.27 web
  mbctl machines pull ghcr.io/example/app:1 app --volume /config=config --volume /data=/srv/app-data`,
		Args: exactArgs("IMAGE", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Image, o.Name = args[0], args[1]
			return machinesPull(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Template, "template", "", "settings template: network_isolated (alias netns-init) (default machines.default_template)")
	fl.StringArrayVar(&o.Volumes, "volume", nil, "where a volume lives: PATH=config|data|skip|/abs/host/dir (repeatable)")
	fl.StringVar(&o.InitMode, "init-mode", string(imageinit.Auto), "auto, supervise or exec-pid1")
	fl.StringVar(&o.Platform, "platform", "", "image platform os/arch[/variant] (default: this host's)")
	fl.BoolVarP(&o.Yes, "yes", "y", false, "never ask: unanswered volumes become data volumes")
	fl.BoolVarP(&o.Quiet, "quiet", "q", false, "no progress output")
	_ = cmd.RegisterFlagCompletionFunc("template", cobra.FixedCompletions(man8env.Templates(), cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("init-mode", cobra.FixedCompletions(initModeNames(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func machinesPull(ctx context.Context, f *Factory, o machinesPullOptions) error {
	// Everything that can be checked without the network comes first.
	p, cfg, err := machinePaths(f, o.Name)
	if err != nil {
		return err
	}
	tmpl := o.Template
	if tmpl == "" {
		tmpl = cfg.Machines.DefaultTemplate
	}
	if tmpl, err = man8env.ParseTemplate(tmpl); err != nil {
		return usagef("--template: %v", err)
	}
	mode, err := imageinit.ParseMode(o.InitMode)
	if err != nil {
		return usagef("--init-mode: %v", err)
	}
	answered := map[string]machine.Volume{}
	var order []string
	for _, s := range o.Volumes {
		v, err := machine.ParseVolumeFlag(s)
		if err != nil {
			return usagef("%v", err)
		}
		if _, dup := answered[v.Path]; dup {
			return usagef("--volume %s given twice", v.Path)
		}
		if v.Kind == machine.VolumeCustom {
			if err := machine.CheckCustomDir(v.Host, p); err != nil {
				return fmt.Errorf("--volume %s: %w", s, err)
			}
		}
		answered[v.Path] = v
		order = append(order, v.Path)
	}
	if err := p.CheckFree(); err != nil {
		return err
	}
	subnet, source, err := yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix)
	if err != nil {
		return fmt.Errorf("machine %s needs this host's Yggdrasil subnet for its address: %w", o.Name, err)
	}
	f.Logger().Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
	src, err := locateInit(f)
	if err != nil {
		return err
	}

	// The image's config (no layers yet) says which volumes to ask about.
	im, err := resolveImage(ctx, f, o.Image, o.Platform)
	if err != nil {
		return err
	}
	vols, err := chooseVolumes(ctx, f, p, imageVolumes(f, im), answered, order, o.Yes)
	if err != nil {
		return err
	}

	c, err := openCache(f)
	if err != nil {
		return err
	}
	start := time.Now()
	progress := newPullProgress(f, o.Quiet)
	res, err := provision.Create(ctx, provision.Options{
		Name: o.Name, Dirs: cfg.Paths, Bridge: cfg.Network.Bridge, Template: tmpl,
		Image: im, Ref: o.Image, Subnet: subnet, Mode: mode, Volumes: vols,
		Cache: c, Pull: pull.Options{Progress: progress, Log: f.Logger()},
		Init: src, Version: buildinfo.Get().Version, Log: f.Logger(),
	})
	progress.Done(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: machine %s not created; everything this run made was removed", o.Name)
		}
		return fmt.Errorf("creating machine %s: %w (everything this run made was removed)", o.Name, err)
	}
	printCreated(f, res, im, time.Since(start))
	return nil
}

// imageVolumes returns the image's declared volumes, clean and sorted.
// A volume path that cannot be used is dropped with a warning.
func imageVolumes(f *Factory, im *registry.Image) []string {
	var out []string
	for _, v := range slices.Sorted(maps.Keys(im.Config.Config.Volumes)) {
		c, err := machine.CleanVolumePath(v)
		if err != nil {
			f.Logger().Warn("ignoring a volume of the image", "err", err)
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// chooseVolumes decides where each volume lives: from the flags, --yes, or
// by asking on the terminal.
func chooseVolumes(ctx context.Context, f *Factory, p machine.Paths, declared []string, answered map[string]machine.Volume, flagOrder []string, yes bool) ([]machine.Volume, error) {
	var vols []machine.Volume
	var unanswered []string
	for _, path := range declared {
		if v, ok := answered[path]; ok {
			vols = append(vols, v)
			continue
		}
		if yes {
			vols = append(vols, machine.Volume{Path: path, Kind: machine.VolumeData})
			continue
		}
		unanswered = append(unanswered, path)
	}
	for _, path := range flagOrder {
		if !slices.Contains(declared, path) {
			fmt.Fprintf(f.IO.ErrOut, "Volume %s is not declared by the image; mounting it as asked.\n", path)
			vols = append(vols, answered[path])
		}
	}
	if len(unanswered) == 0 {
		return vols, nil
	}
	if !f.IO.IsStdinTTY() {
		return nil, fmt.Errorf("the image declares %s %s; with no terminal to ask on, answer with --volume PATH=config|data|skip|/host/dir (or --yes for data)",
			plural(len(unanswered), "volume", "volumes"), strings.Join(unanswered, ", "))
	}
	pr := f.prompter()
	for _, path := range unanswered {
		v, err := askVolume(ctx, pr, p, path, vols)
		if err != nil {
			return nil, err
		}
		vols = append(vols, v)
	}
	return vols, nil
}

// askVolume asks where one volume should live, until the answer is valid.
func askVolume(ctx context.Context, pr *prompter, p machine.Paths, path string, chosen []machine.Volume) (machine.Volume, error) {
	fmt.Fprintf(pr.out, "\nThe image declares the volume %s. Where should it live?\n", path)
	fmt.Fprintf(pr.out, "  1) config       %s\n", machine.Volume{Path: path, Kind: machine.VolumeConfig}.Place(p).Host)
	fmt.Fprintf(pr.out, "  2) data         %s\n", machine.Volume{Path: path, Kind: machine.VolumeData}.Place(p).Host)
	fmt.Fprintf(pr.out, "  3) custom path  a new host dir you name\n")
	fmt.Fprintf(pr.out, "  4) skip         not mounted\n")
	for {
		a, err := pr.ask(ctx, "Choice [2]: ")
		if err != nil {
			return machine.Volume{}, askErr(err)
		}
		switch strings.ToLower(a) {
		case "1", "config":
			return machine.Volume{Path: path, Kind: machine.VolumeConfig}, nil
		case "", "2", "data":
			return machine.Volume{Path: path, Kind: machine.VolumeData}, nil
		case "4", "skip":
			return machine.Volume{Path: path, Kind: machine.VolumeSkip}, nil
		case "3", "custom":
			for {
				dir, err := pr.ask(ctx, "Host dir (absolute path, must not exist yet): ")
				if err != nil {
					return machine.Volume{}, askErr(err)
				}
				err = machine.CheckCustomDir(dir, p)
				for _, c := range chosen {
					if err == nil && c.Kind == machine.VolumeCustom && c.Host == dir {
						err = fmt.Errorf("%s is already the dir of volume %s", dir, c.Path)
					}
				}
				if err == nil {
					return machine.Volume{Path: path, Kind: machine.VolumeCustom, Host: dir}, nil
				}
				fmt.Fprintf(pr.out, "  %v\n", err)
			}
		default:
			fmt.Fprintln(pr.out, "  Please answer 1, 2, 3 or 4.")
		}
	}
}

func askErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted while asking about volumes: nothing was created")
	}
	return fmt.Errorf("asking about volumes: %w", err)
}

// printCreated prints what was detected and chosen, and the summary.
func printCreated(f *Factory, res *provision.Created, im *registry.Image, took time.Duration) {
	w := f.IO.Out
	p := res.Paths
	fmt.Fprintf(w, "Init: detected %s (%s); mode %s: %s\n", res.Detection.Kind, res.Detection.Evidence, res.Mode, res.ModeReason)
	fmt.Fprintf(w, "\nMachine %s created from %s@%s in %.1fs.\n", p.Name, registry.DisplayName(im.Ref), im.Digest, took.Seconds())
	fmt.Fprintf(w, "  Yggdrasil address  %s\n", res.YggAddress)
	fmt.Fprintf(w, "  root file system   %s\n", p.Rootfs)
	fmt.Fprintf(w, "  settings           %s (read by nspawn as %s)\n", p.Settings, p.SettingsLink)
	fmt.Fprintf(w, "  environment        %s\n", p.Env)
	for _, v := range res.Volumes {
		if v.Kind == machine.VolumeSkip {
			fmt.Fprintf(w, "  volume %s  not mounted\n", v.Path)
			continue
		}
		fmt.Fprintf(w, "  volume %s  %s (%s)\n", v.Path, v.Host, v.Kind)
	}
	fmt.Fprintf(w, "\nStart it with 'mbctl machines start %s' (systemd) or 'mbctl machines run %s' (foreground).\n", p.Name, p.Name)
}

// initModeNames lists the --init-mode values.
func initModeNames() []string {
	var out []string
	for _, m := range imageinit.Modes() {
		out = append(out, string(m))
	}
	return out
}
