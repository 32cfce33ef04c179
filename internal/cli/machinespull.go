package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/host/yggadmin"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

// MachinesPullOptions are the inputs of `machines pull`.
type MachinesPullOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Getenv reads $MBCTL_INIT, which overrides machines.init.
	Getenv func(string) string
	// Ask asks a question on the terminal (nil: there is nobody to ask).
	Ask askFunc

	Image, Name string
	Template    string
	// Uplink is --uplink, the macvlan template's host interface ("":
	// network.uplink).
	Uplink  string
	Volumes []string
	// Env are the --env KEY=VALUE flags, EnvFiles the --env-file files, in
	// the order given.
	Env, EnvFiles []string
	// Publish are the --publish specs, HOSTPORT[:PORT][/tcp|udp].
	Publish  []string
	InitMode string
	// NoProbe skips the init probe; RunProbe runs it (default probe.Run;
	// tests give a fake).
	NoProbe    bool
	RunProbe   func(context.Context, probe.Input, probe.Config) (*probe.Findings, error)
	Platform   string
	Yes, Quiet bool
	// Adopt uses the machine's kept config dir and storage dir.
	Adopt bool
	// Strict runs the machine on the image's shared read-only root.
	Strict bool
	// Entrypoint and Cmd are --entrypoint and --cmd, nil when not given.
	Entrypoint, Cmd *string
	// Pin, if set, is the digest Image is resolved at ('machines clone':
	// the source machine's), while Image is what the files record;
	// Inherited are variables set before --env-file and --env (the source
	// machine's).
	Pin       string
	Inherited []machinefiles.EnvVar
	JSON      bool

	// Restart is --restart, the unit's restart policy (see machines set);
	// Commands runs systemctl daemon-reload for it (nil: the system's).
	Restart  string
	Commands commands
	// IPv6Uplink decides whether the host has IPv6 to the internet
	// (uplink.DecideHere); without, the machine gets MAN8S_IPV6=optional.
	// Nil: the host counts as having it (tests).
	IPv6Uplink func(mode, bridge string) (uplink.IPv6, error)
}

// newMachinesPullCmd is `machines pull` as the machines group adds it.
func newMachinesPullCmd(f *Factory) *cobra.Command { return NewCmdMachinesPull(f, nil) }

// NewCmdMachinesPull builds `machines pull`; runF, if not nil, replaces
// machinesPullRun (tests).
func NewCmdMachinesPull(f *Factory, runF func(context.Context, *MachinesPullOptions) error) *cobra.Command {
	opts := &MachinesPullOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Getenv: f.Getenv, Ask: f.prompter().ask, RunProbe: probe.Run, IPv6Uplink: uplink.DecideHere}
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

Environment: the app's variables are the image's ENV, then the lines of
each --env-file FILE, then each --env KEY=VALUE, a later one winning. They
go to man8env.env with its rules: split at the first '=', the value taken
literally (quotes and $ are part of it; nothing is unquoted or expanded).
An --env-file is read like man8env.env, and a line in it that would not do
what it looks like (no '=', "export KEY=...", a value in quotes) fails the
pull before anything is made, naming the line. Of Man8S's own MAN8S_ keys
only man8s-init's settings may be given (MAN8S_STOP_TIMEOUT, MAN8S_WAIT_FOR,
MAN8S_STOP_SIGNAL, ...); the others are mbctl's. Values given as --env are
seen by other users of the host in the process list: put secrets in a file
(mode 0600). --json lists the keys given, never their values.

Command: --cmd 'WORDS' replaces the image's CMD (what 'docker run IMAGE
ARGS...' does) and --entrypoint 'WORDS' its ENTRYPOINT (dropping its CMD
unless --cmd is given too): the machine's own command, so that one image
serves several roles. The words are quoted as for a shell; nothing is
expanded. It lands in MAN8S_APPLICATION_ARGS and counts as your edit:
upgrades keep it.

Templates (--template, default machines.default_template) say how the
machine is attached to the network:
` + templateHelp() + `
macvlan needs the host's interface on the LAN: --uplink IFACE or
network.uplink. Its machine is a host of its own on the LAN (its MAC address
is derived from its name, so its DHCP lease stays), and keeps its Yggdrasil
address on a second link to the bridge, which is also the only way the host
itself reaches it. A host_network machine has no address of its own: it
listens on the host's, and as its root is not the host's root it cannot
listen on ports below 1024.

Publishing: --publish HOSTPORT[:PORT][/tcp|udp] (repeatable) writes
systemd-nspawn's Port= into container.nspawn: connections to HOSTPORT on
the host's addresses go to PORT of the machine (default: HOSTPORT; tcp
unless /udp). Not on 127.0.0.1 or [::1]: nspawn's rule leaves loopback
alone. There is no HOSTIP: part, as nspawn's Port= has none; a host port
another machine publishes is refused. 'mbctl machines publish --help' says
where a published port is reachable; 'machines publish' and 'unpublish'
change them later.

Init mode: man8s-init supervises the app as PID 2 ("supervise"), unless the
image brings its own init that insists on PID 1 (s6-overlay, systemd), which
man8s-init then execs after setting up ("exec-pid1"). "auto" detects it.

The init probe: before it chooses, the pull runs the image's entrypoint for a
few seconds as PID 1 in a throwaway machine without network (on an overlay:
the image is not changed), and reads which signals it catches, ignores and
blocks, whether it reaps a child it adopts and whether it exits on its stop
signal (see 'mbctl oci inspect --probe'). "auto" runs another init the image
brings (tini, dumb-init, ...) as PID 1 only when the probe shows that it
behaves as PID 1 should; and the pull warns when a stop will not end the app
(it ignores its stop signal, or as PID 1 does not handle it). The probe is
bounded (10 s), leaves nothing behind, and when it cannot run the name alone
decides. --no-probe skips it.

Strict machines (--strict): the machine's root is the image's own tree,
unpacked once per image digest into the image root store (paths.images) and
shared, read-only, by every strict machine of that image: a second one costs
no unpack and no disk. Writes outside the volumes fail (the root is
read-only; /run and /tmp are the machine's own tmpfs), so all state must
live in volumes; add TemporaryFileSystem=PATH to container.nspawn for
scratch space that a stop empties. A strict machine's volumes must be paths
of the image. Its root stays in the store while any machine uses it ('mbctl
cache list' shows which; 'cache prune' frees the others). On btrfs every
machine's root file system, strict or not, comes from that store: a free
machine's is a writable snapshot of the image's root, made in milliseconds
and sharing its disk blocks.

With --json, stdout is one JSON object describing the new machine (name,
Yggdrasil address, paths, image reference and digest, init mode and why,
volumes, the keys given with --env-file and --env, layer counts, duration)
and nothing else; progress, if any, goes to stderr as plain lines, never as
bars.

Nothing is left behind on an error or Ctrl-C: every dir and link this run
created is removed again.`,
		Example: `  mbctl machines pull registry:2 Man8Registry --volume /var/lib/registry=data
  mbctl machines pull --yes nginx:1.27 web
  mbctl machines pull --yes nginx:1.27 web --publish 8080:80   # http://HOSTIP:8080/ from other hosts
  mbctl machines pull ghcr.io/example/app:1 app --volume /config=config --volume /data=/srv/app-data

  # a machine of its own on the LAN (DHCP and SLAAC from the LAN's router)
  mbctl machines pull --yes --template macvlan --uplink enp3s0 pihole/pihole dns
  # a tool that must see the host's interfaces
  mbctl machines pull --yes --template host_network prom/node-exporter node-exporter

  # a SeaweedFS cluster: roles of one image chosen by arguments, sharing its
  # read-only root; the volume servers reach the master on its Yggdrasil address
  mbctl machines pull --yes --strict chrislusf/seaweedfs sw-master --cmd 'master -mdir=/data' --volume /data=data
  mbctl machines pull --yes --strict chrislusf/seaweedfs sw-volume --volume /data=data \
      --cmd "volume -dir=/data -mserver='[$(mbctl address get sw-master)]:9333'"
  mbctl machines clone --yes sw-volume sw-volume2

  # postgres refuses to start without a password: give it at pull
  printf 'POSTGRES_PASSWORD=s3cr3t\n' > db.env && chmod 600 db.env
  mbctl machines pull postgres:17 db --volume /var/lib/postgresql/data=data \
      --env-file db.env --env POSTGRES_DB=app --env MAN8S_STOP_TIMEOUT=60

  # from a script: no questions, no progress, the machine's address from the JSON
  mbctl machines pull --yes --quiet --json nginx:1.27 web | jq -r .ygg_address`,
		Args: exactArgs("IMAGE", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Image, opts.Name = args[0], args[1]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesPullRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Template, "template", "", "how the machine is attached to the network (default machines.default_template):\n"+templateHelp())
	fl.StringVar(&opts.Uplink, "uplink", "", "the host's interface on the LAN that a macvlan machine gets its macvlan of, as `IFACE` (default network.uplink)")
	fl.StringArrayVar(&opts.Volumes, "volume", nil, "where a volume lives: PATH=config|data|skip|/abs/host/dir (repeatable)")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "set a variable of the app to a literal value: `KEY=VALUE` (repeatable; wins over --env-file and the image)")
	fl.StringArrayVar(&opts.EnvFiles, "env-file", nil, "set the app's variables from `FILE`, KEY=VALUE lines read as man8env.env (repeatable)")
	fl.StringArrayVarP(&opts.Publish, "publish", "p", nil, "publish a port on the host: `HOSTPORT[:PORT][/tcp|udp]`, nspawn's Port= (repeatable; no host address: nspawn publishes on all of them; see 'machines publish --help')")
	fl.StringVar(&opts.InitMode, "init-mode", string(imageinit.Auto), "auto, supervise or exec-pid1")
	fl.BoolVar(&opts.NoProbe, "no-probe", false, "do not probe how the entrypoint behaves as PID 1: the init mode follows its name alone")
	fl.StringVar(&opts.Platform, "platform", "", "image platform os/arch[/variant] (default: this host's)")
	fl.BoolVarP(&opts.Yes, "yes", "y", false, "never ask: unanswered volumes become data volumes")
	var entrypoint, cmdLine string
	fl.StringVar(&entrypoint, "entrypoint", "", "the machine's own entrypoint instead of the image's, as `WORDS` quoted like a shell's (no expansion); drops the image's CMD unless --cmd is given")
	fl.StringVar(&cmdLine, "cmd", "", "the machine's own arguments instead of the image's CMD (docker run IMAGE ARGS...), as `WORDS` quoted like a shell's")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("entrypoint") {
			opts.Entrypoint = &entrypoint
		}
		if cmd.Flags().Changed("cmd") {
			opts.Cmd = &cmdLine
		}
		return nil
	}
	fl.BoolVar(&opts.Strict, "strict", false, "run on the image's root, shared read-only with every strict machine of the image (state only in volumes)")
	fl.BoolVar(&opts.Adopt, "adopt", false, "use the machine's kept config dir, storage dir and volume dirs as they are ('machines remove --keep-data', or copied from another host)")
	fl.StringVar(&opts.Restart, "restart", "", "systemd restart policy of the machine: no, on-failure or always (default: systemd-nspawn@.service's, no; change it with 'machines set')")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "no progress output")
	fl.BoolVar(&opts.JSON, "json", false, "print the new machine as one JSON object on stdout (no progress bars)")
	_ = cmd.RegisterFlagCompletionFunc("template", cobra.FixedCompletions(man8env.Templates(), cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("init-mode", cobra.FixedCompletions(initModeNames(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// machinesPullReport is the --json form of `machines pull`.
type machinesPullReport struct {
	Name string `json:"name"`
	// YggAddress is the zero address (omitted) for a host_network machine.
	YggAddress netip.Addr       `json:"ygg_address,omitzero"`
	Template   string           `json:"template"`
	Image      imageReport      `json:"image"`
	Init       pulledInitReport `json:"init"`
	Paths      machine.Paths    `json:"paths"`
	Volumes    []machine.Volume `json:"volumes"`
	// EnvKeys are the keys given with --env-file and --env, in the order
	// man8env.env sets them; their values may be secrets and are left out.
	EnvKeys []string `json:"env_keys"`
	// IPv6Optional: the host has no IPv6 uplink, and man8env.env got
	// MAN8S_IPV6=optional.
	IPv6Optional bool `json:"ipv6_optional"`
	// Published are the ports published on the host (--publish).
	Published []nspawnport.Port `json:"published_ports"`
	Layers    layersReport      `json:"layers"`
	Unpacked  unpackedReport    `json:"unpacked"`
	// Root is the image root the machine runs on or was snapshotted from.
	Root    *imageRootReport `json:"image_root,omitempty"`
	Seconds float64          `json:"duration_seconds"`
}

// imageRootReport is the image root a machine's rootfs comes from.
type imageRootReport struct {
	Path string `json:"path"`
	// Strict: the machine runs on it, read-only; else its rootfs is a
	// btrfs snapshot of it.
	Strict bool `json:"strict"`
	// Reused: the root was there already (no unpack).
	Reused bool `json:"reused"`
}

// pulledInitReport says which init the image has, the mode chosen and why,
// and what was installed at /man8s-init.
type pulledInitReport struct {
	Detected   string `json:"detected"`
	Evidence   string `json:"evidence,omitempty"`
	Mode       string `json:"mode"`
	ModeReason string `json:"mode_reason"`
	Installed  string `json:"installed"`
	Source     string `json:"source"`
	From       string `json:"source_from"`
	Busybox    string `json:"busybox,omitempty"`
	ShellLink  bool   `json:"shell_link"`
	// MadeUsr: the image has no /usr, and an empty one was made for
	// systemd-nspawn.
	MadeUsr bool `json:"made_usr"`
	// ProbeKept: the probe's findings are an earlier pull's of the same
	// image with the same variables; it did not run again.
	ProbeKept bool `json:"probe_kept"`
	// Probe is what the init probe found (absent with --no-probe or when
	// it failed: ProbeError); StopWarning says why a stop will not end the
	// app.
	Probe       *probeReport `json:"probe,omitempty"`
	ProbeError  string       `json:"probe_error,omitempty"`
	StopWarning string       `json:"stop_warning,omitempty"`
}

func machinesPullRun(ctx context.Context, opts *MachinesPullOptions) error {
	// Everything that can be checked without the network comes first.
	if err := machine.ValidateName(opts.Name); err != nil {
		return err
	}
	if err := checkPullRestart(opts.Restart); err != nil {
		return err
	}
	env, err := pullEnv(opts.EnvFiles, opts.Env)
	if err != nil {
		return err
	}
	env = overEnv(opts.Inherited, env)
	entrypoint, cmdArgs, err := commandFlags(opts.Entrypoint, opts.Cmd)
	if err != nil {
		return err
	}
	cfg, origin, err := opts.Config()
	if err != nil {
		return err
	}
	p := machine.PathsFor(cfg.Paths, opts.Name)
	// A pull killed earlier may have left a half machine of this name.
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	tmpl := opts.Template
	if tmpl == "" {
		tmpl = cfg.Machines.DefaultTemplate
	}
	if tmpl, err = man8env.ParseTemplate(tmpl); err != nil {
		if opts.Template == "" {
			return fmt.Errorf("machines.default_template in the configuration: %w (or pass --template)", err)
		}
		return usagef("--template: %v", err)
	}
	uplink := opts.Uplink
	if uplink == "" {
		uplink = cfg.Network.Uplink
	}
	if tmpl == man8env.TemplateMacvlan {
		switch {
		case uplink == "":
			return usagef("--template macvlan needs the host's interface on the LAN: pass --uplink IFACE or set network.uplink in %s", origin.Path)
		case opts.Uplink != "":
			if err := config.ValidateIfName(uplink); err != nil {
				return usagef("--uplink: %v", err)
			}
		}
	} else if opts.Uplink != "" {
		return usagef("--uplink is for --template %s only (this machine's template is %s)", man8env.TemplateMacvlan, tmpl)
	}
	mode, err := imageinit.ParseMode(opts.InitMode)
	if err != nil {
		return usagef("--init-mode: %v", err)
	}
	answered, order, err := parseVolumeFlags(opts.Volumes, p, opts.Adopt)
	if err != nil {
		return err
	}
	ports, err := parsePublishSpecs("--publish", opts.Publish)
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		if err := nspawnport.CheckTemplate(tmpl); err != nil {
			return usagef("--publish: %v", err)
		}
		if err := machine.CheckPortsFree(cfg.Paths, opts.Name, ports); err != nil {
			return fmt.Errorf("--publish: %w", err)
		}
	}
	if opts.Adopt {
		if _, err := os.Stat(p.ConfigDir); err == nil {
			// A kept config dir: the new image is merged into its files,
			// as an upgrade does.
			if len(env) > 0 {
				return usagef("--env and --env-file with --adopt: machine %s keeps its %s; edit it instead", opts.Name, p.Env)
			}
			if len(ports) > 0 {
				return usagef("--publish with --adopt: machine %s keeps its %s and the ports it publishes; change them with 'mbctl machines publish %s ...' after the pull", opts.Name, p.Settings, opts.Name)
			}
			if err := machinesUpgradeRun(ctx, &MachinesUpgradeOptions{
				MachineDeps: MachineDeps{IO: opts.IO, Config: opts.Config, Log: opts.Log}, Getenv: opts.Getenv, Ask: opts.Ask,
				Name: opts.Name, Image: opts.Image, Volumes: opts.Volumes, InitMode: opts.InitMode, Platform: opts.Platform,
				Yes: opts.Yes, Quiet: opts.Quiet, JSON: opts.JSON, NoProbe: opts.NoProbe, RunProbe: opts.RunProbe, adopt: true,
			}); err != nil {
				return err
			}
			return pullRestart(ctx, opts)
		}
	} else if err := p.CheckFree(); err != nil {
		return err
	}
	var subnet netip.Prefix
	if man8env.HasOwnNetwork(tmpl) {
		var source string
		if subnet, source, err = yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix); err != nil {
			return fmt.Errorf("machine %s needs this host's Yggdrasil subnet for its address: %w", opts.Name, err)
		}
		opts.Log.Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
	}
	src, err := locateInit(cfg, opts.Getenv, opts.Log)
	if err != nil {
		return err
	}
	noIPv6 := pullNoIPv6Uplink(opts, cfg, tmpl, env)

	// The image's config (no layers yet) says which volumes to ask about.
	resolveRef := opts.Image
	if opts.Pin != "" {
		resolveRef = pinned(opts.Image, opts.Pin)
	}
	im, err := resolveImage(ctx, cfg, opts.Log, resolveRef, opts.Platform)
	if err != nil {
		return err
	}
	vols, err := chooseVolumes(ctx, opts, p, imageVolumes(opts.Log, im), answered, order)
	if err != nil {
		return err
	}

	c, err := cache.OpenWith(cfg.Paths.Cache, cache.Options{Log: opts.Log})
	if err != nil {
		return err
	}
	start := time.Now()
	progress := newPullProgress(opts.IO, opts.Quiet, opts.JSON)
	var probeFn func(context.Context, probe.Input) (*probe.Findings, error)
	if !opts.NoProbe && opts.RunProbe != nil {
		probeFn = func(ctx context.Context, in probe.Input) (*probe.Findings, error) {
			progress.Phase("probing how the entrypoint behaves as PID 1")
			return opts.RunProbe(ctx, in, probe.Config{Init: src, Log: opts.Log})
		}
	}
	res, err := provision.Create(ctx, provision.Options{
		Name: opts.Name, Dirs: cfg.Paths, Bridge: cfg.Network.Bridge, Uplink: uplink, Template: tmpl,
		Image: im, Ref: opts.Image, Subnet: subnet, Mode: mode, Volumes: vols, Env: env, NoIPv6Uplink: noIPv6, Ports: ports,
		Cache: c, Pull: pull.Options{Progress: progress, Log: opts.Log},
		Init: src, Probe: probeFn, Version: buildinfo.Get().Version, Log: opts.Log, Adopt: opts.Adopt, Strict: opts.Strict,
		Entrypoint: entrypoint, Cmd: cmdArgs,
		BeforeStep: withPhases(progress, faultPause(ctx, opts.Getenv, opts.IO.ErrOut)),
	})
	progress.Done(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: machine %s not created; everything this run made was removed", opts.Name)
		}
		return fmt.Errorf("creating machine %s: %w (everything this run made was removed)", opts.Name, err)
	}
	took := time.Since(start)
	if err := pullRestart(ctx, opts); err != nil {
		return err
	}
	if res.ProbeErr != nil {
		fmt.Fprintf(opts.IO.ErrOut, "warning: the init probe did not finish, so the init mode follows the entrypoint's name (--no-probe skips the probe): %v\n", res.ProbeErr)
	}
	if res.StopWarning != "" {
		fmt.Fprintf(opts.IO.ErrOut, "warning: %s\n", res.StopWarning)
	}
	// Written unless the image sets MAN8S_IPV6 itself (machinefiles).
	ipv6Optional := noIPv6 != "" && !slices.ContainsFunc(im.Config.Config.Env, func(kv string) bool { return strings.HasPrefix(kv, man8env.KeyIPv6+"=") })
	if ipv6Optional {
		fmt.Fprintf(opts.IO.ErrOut, "notice: this host has no IPv6 uplink (%s): machine %s got %s=optional in %s; its ULA address and Yggdrasil work\n",
			noIPv6, opts.Name, man8env.KeyIPv6, res.Paths.Env)
	}
	if opts.JSON {
		r := pullReport(res, im, opts.Image, tmpl, src.Init, src.InitFrom, took)
		r.EnvKeys = envKeys(env)
		r.IPv6Optional = ipv6Optional
		r.Published = ports
		if r.Published == nil {
			r.Published = []nspawnport.Port{}
		}
		return writeJSON(opts.IO.Out, r)
	}
	if err := printCreated(opts.IO.Out, res, im, envKeys(env), took); err != nil {
		return err
	}
	printPublishNote(opts.IO.Out, ports)
	return nil
}

// pullNoIPv6Uplink says why the host has no IPv6 to the internet, or ""
// when it has, when the variables given at pull set MAN8S_IPV6 (the
// user's choice wins) or when it cannot tell (a warning; the machine then
// keeps the default, required).
func pullNoIPv6Uplink(opts *MachinesPullOptions, cfg config.Config, tmpl string, env []machinefiles.EnvVar) string {
	// Only a machine on the bridge takes its IPv6 from the host: a macvlan
	// one has the LAN's router, a host_network one no setup of its own.
	if tmpl != man8env.TemplateNetworkIsolated {
		return ""
	}
	if opts.IPv6Uplink == nil || slices.ContainsFunc(env, func(v machinefiles.EnvVar) bool { return v.Key == man8env.KeyIPv6 }) {
		return ""
	}
	v6, err := opts.IPv6Uplink(cfg.Network.IPv6Uplink, cfg.Network.Bridge)
	if err != nil {
		fmt.Fprintf(opts.IO.ErrOut, "warning: cannot tell whether this host has IPv6 to the internet (set network.ipv6_uplink to yes or no): %v\n", err)
		return ""
	}
	opts.Log.Debug("host ipv6 uplink", "present", v6.Present, "configured", v6.Configured, "route", v6.Route)
	if v6.Present {
		return ""
	}
	return v6.Why()
}

// overEnv returns base with each of over set in it, in place where base
// has the key, else added.
func overEnv(base, over []machinefiles.EnvVar) []machinefiles.EnvVar {
	if len(base) == 0 {
		return over
	}
	out := slices.Clone(base)
	for _, v := range over {
		if i := slices.IndexFunc(out, func(b machinefiles.EnvVar) bool { return b.Key == v.Key }); i >= 0 {
			out[i].Value = v.Value
			continue
		}
		out = append(out, v)
	}
	return out
}

// commandFlags splits --entrypoint and --cmd into words, the way
// MAN8S_APPLICATION_ARGS is split: quotes and escapes count, nothing is
// expanded. A flag not given is nil.
func commandFlags(entrypoint, cmd *string) (ep, args []string, err error) {
	split := func(flag string, s *string) ([]string, error) {
		if s == nil {
			return nil, nil
		}
		w, err := appargs.Words(*s)
		if err != nil && strings.TrimSpace(*s) != "" {
			return nil, usagef("--%s %q: %v (quote the words as for a shell: a word with [ ] * ? or $, such as http://[ADDR]:PORT, in single quotes)", flag, *s, err)
		}
		if w == nil {
			w = []string{}
		}
		return w, nil
	}
	if ep, err = split("entrypoint", entrypoint); err != nil {
		return nil, nil, err
	}
	if args, err = split("cmd", cmd); err != nil {
		return nil, nil, err
	}
	if ep != nil && len(ep) == 0 && len(args) == 0 {
		return nil, nil, usagef("--entrypoint '' without --cmd leaves the machine no command to run")
	}
	return ep, args, nil
}

// pullEnv reads the --env-file files, then the --env flags, into the
// variables they give man8env.env, in order: a key given again keeps its
// first place and takes the later value. Everything is checked here, before
// the pull makes anything. The value of an --env never appears in an
// error (it may be a secret); a bad line of a file is described as
// envfile's Problems describe it to machines show and man8s-init.
func pullEnv(files, flags []string) ([]machinefiles.EnvVar, error) {
	var vars []machinefiles.EnvVar
	at := map[string]int{}
	set := func(k, v string) {
		if i, ok := at[k]; ok {
			vars[i].Value = v
			return
		}
		at[k] = len(vars)
		vars = append(vars, machinefiles.EnvVar{Key: k, Value: v})
	}
	for _, name := range files {
		f, err := envfile.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		if probs := f.Problems(); len(probs) > 0 {
			var b strings.Builder
			fmt.Fprintf(&b, "--env-file %s: %s that would not do what %s like (nothing was created):",
				name, plural(len(probs), "a line", fmt.Sprint(len(probs), " lines")), plural(len(probs), "it looks", "they look"))
			for _, p := range probs {
				fmt.Fprintf(&b, "\n  %s", p)
			}
			return nil, errors.New(b.String())
		}
		vals := f.Map()
		for _, k := range f.Keys() {
			if err := man8env.CheckUserKey(k); err != nil {
				return nil, fmt.Errorf("--env-file %s: %w", name, err)
			}
			set(k, vals[k])
		}
	}
	for _, s := range flags {
		k, v, ok := strings.Cut(s, "=")
		// Shown as KEY=… : the value may be a secret.
		shown := k + "=…"
		switch {
		case !ok:
			return nil, usagef("--env %q: no '=' (write %s=VALUE; mbctl does not pass on its own environment)", s, s)
		case k == "":
			return nil, usagef("--env %q: the key before '=' is empty (write KEY=VALUE)", shown)
		case strings.ContainsAny(k, " \t"):
			return nil, usagef("--env %q: the key holds a blank, which would be part of the variable's name", shown)
		}
		if err := envfile.ValidateKey(k); err != nil {
			return nil, usagef("--env %q: %v", shown, err)
		}
		if err := envfile.ValidateValue(k, v); err != nil {
			return nil, usagef("--env %q: %v", shown, err)
		}
		if err := man8env.CheckUserKey(k); err != nil {
			return nil, usagef("--env %q: %v", shown, err)
		}
		set(k, v)
	}
	return vars, nil
}

// envKeys lists the keys of vars (never nil: --json prints a list).
func envKeys(vars []machinefiles.EnvVar) []string {
	keys := []string{}
	for _, v := range vars {
		keys = append(keys, v.Key)
	}
	return keys
}

// parseVolumeFlags parses the --volume values for machine p: the answers
// by volume path, and the paths in flag order. Custom dirs are checked
// here, before anything is downloaded.
func parseVolumeFlags(flags []string, p machine.Paths, adopt bool) (map[string]machine.Volume, []string, error) {
	answered := map[string]machine.Volume{}
	var order []string
	for _, s := range flags {
		v, err := machine.ParseVolumeFlag(s)
		if err != nil {
			return nil, nil, usagef("%v", err)
		}
		if _, dup := answered[v.Path]; dup {
			return nil, nil, usagef("--volume %s given twice: give one --volume per path", v.Path)
		}
		if v.Kind == machine.VolumeCustom {
			if fi, err := os.Stat(v.Host); adopt && err == nil && fi.IsDir() {
				// Kept: used as it is.
			} else if err := machine.CheckCustomDir(v.Host, p); err != nil {
				return nil, nil, fmt.Errorf("--volume %s: %w", s, err)
			}
			for _, path := range order {
				if err := customOverlap(v.Host, answered[path]); err != nil {
					return nil, nil, fmt.Errorf("--volume %s: %w", s, err)
				}
			}
		}
		answered[v.Path] = v
		order = append(order, v.Path)
	}
	return answered, order, nil
}

// customOverlap fails when dir, a new custom volume dir, is the custom dir
// of volume c, or inside it, or holds it: both would be bound into the
// machine, the content of one inside the other.
func customOverlap(dir string, c machine.Volume) error {
	if c.Kind != machine.VolumeCustom || !(fsutil.Within(dir, c.Host) || fsutil.Within(c.Host, dir)) {
		return nil
	}
	if dir == c.Host {
		return fmt.Errorf("%s is already the dir of volume %s", dir, c.Path)
	}
	return fmt.Errorf("%s overlaps %s, the dir of volume %s", dir, c.Host, c.Path)
}

// imageVolumes returns the image's declared volumes, clean and sorted.
// A volume path that cannot be used is dropped with a warning.
func imageVolumes(log *slog.Logger, im *registry.Image) []string {
	var out []string
	if im.Config == nil {
		return nil
	}
	for _, v := range slices.Sorted(maps.Keys(im.Config.Config.Volumes)) {
		c, err := machine.CleanVolumePath(v)
		if err != nil {
			log.Warn("ignoring a volume of the image", "err", err)
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// chooseVolumes decides where each volume lives: from the flags, --yes, or
// by asking on the terminal. The declared volumes come first, in their
// order, then those only the flags name.
func chooseVolumes(ctx context.Context, opts *MachinesPullOptions, p machine.Paths, declared []string, answered map[string]machine.Volume, flagOrder []string) ([]machine.Volume, error) {
	var vols []machine.Volume
	var unanswered []int // indexes into vols, of volumes to ask about
	for _, path := range declared {
		switch v, ok := answered[path]; {
		case ok:
			vols = append(vols, v)
		case opts.Yes:
			vols = append(vols, machine.Volume{Path: path, Kind: machine.VolumeData})
		default:
			unanswered = append(unanswered, len(vols))
			vols = append(vols, machine.Volume{Path: path})
		}
	}
	for _, path := range flagOrder {
		if !slices.Contains(declared, path) {
			fmt.Fprintf(opts.IO.ErrOut, "Volume %s is not declared by the image; mounting it as asked.\n", path)
			vols = append(vols, answered[path])
		}
	}
	if len(unanswered) == 0 {
		return vols, nil
	}
	if !opts.IO.IsStdinTTY() || opts.Ask == nil {
		paths := make([]string, len(unanswered))
		for i, n := range unanswered {
			paths[i] = vols[n].Path
		}
		return nil, fmt.Errorf("the image declares %s %s; with no terminal to ask on, answer with --volume PATH=config|data|skip|/host/dir (or --yes for data)",
			plural(len(paths), "volume", "volumes"), strings.Join(paths, ", "))
	}
	for _, n := range unanswered {
		v, err := askVolume(ctx, opts.Ask, opts.IO.ErrOut, p, vols[n].Path, vols)
		if err != nil {
			return nil, err
		}
		vols[n] = v
	}
	return vols, nil
}

// askVolume asks where one volume should live, until the answer is valid.
// The questions go to w; chosen are the volumes of the machine (a custom
// dir must not overlap theirs).
func askVolume(ctx context.Context, ask askFunc, w io.Writer, p machine.Paths, path string, chosen []machine.Volume) (machine.Volume, error) {
	fmt.Fprintf(w, "\nThe image declares the volume %s. Where should it live?\n", path)
	fmt.Fprintf(w, "  1) config       %s\n", machine.Volume{Path: path, Kind: machine.VolumeConfig}.Place(p).Host)
	fmt.Fprintf(w, "  2) data         %s\n", machine.Volume{Path: path, Kind: machine.VolumeData}.Place(p).Host)
	fmt.Fprintf(w, "  3) custom path  a new host dir you name\n")
	fmt.Fprintf(w, "  4) skip         not mounted\n")
	for {
		a, err := ask(ctx, "Choice [2]: ")
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
				dir, err := ask(ctx, "Host dir (absolute path, must not exist yet): ")
				if err != nil {
					return machine.Volume{}, askErr(err)
				}
				err = machine.CheckCustomDir(dir, p)
				if err == nil {
					dir = filepath.Clean(dir)
					for _, c := range chosen {
						if err = customOverlap(dir, c); err != nil {
							break
						}
					}
				}
				if err == nil {
					return machine.Volume{Path: path, Kind: machine.VolumeCustom, Host: dir}, nil
				}
				fmt.Fprintf(w, "  %v\n", err)
			}
		default:
			fmt.Fprintln(w, "  Please answer 1, 2, 3 or 4.")
		}
	}
}

func askErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted while asking about volumes: nothing was created")
	}
	return fmt.Errorf("asking about volumes: %w (answer them with --volume PATH=config|data|skip|/host/dir)", err)
}

// pullReport is what --json prints for the machine res made from im (ref
// as the user gave it, template tmpl, man8s-init from initSrc).
func pullReport(res *provision.Created, im *registry.Image, ref, tmpl, initSrc, initFrom string, took time.Duration) machinesPullReport {
	r := machinesPullReport{
		Name:       res.Paths.Name,
		YggAddress: res.YggAddress,
		Template:   tmpl,
		Image:      newImageReport(im, ref),
		Init: pulledInitReport{
			Detected: string(res.Detection.Kind), Evidence: res.Detection.Evidence,
			Mode: string(res.Mode), ModeReason: res.ModeReason,
			Installed: res.Init.Init, Source: initSrc, From: initFrom,
			Busybox: res.Init.Busybox, ShellLink: res.Init.ShellLink, MadeUsr: res.Init.MadeUsr,
		},
		Paths:   res.Paths,
		Volumes: append([]machine.Volume{}, res.Volumes...),
		Seconds: roundSeconds(took),
	}
	r.Init.ProbeKept = res.ProbeCached
	if res.Probe != nil {
		r.Init.Probe = newProbeReport(res.Probe)
		r.Init.Probe.Output = "" // the app's output may show a value given with --env
	}
	if res.ProbeErr != nil {
		r.Init.ProbeError = res.ProbeErr.Error()
	}
	r.Init.StopWarning = res.StopWarning
	if res.Pull != nil {
		r.Layers, r.Unpacked = newLayersReport(res.Pull), newUnpackedReport(res.Pull.Stats)
	}
	if res.Root != nil {
		r.Root = &imageRootReport{Path: res.Root.Path, Strict: res.Strict, Reused: res.Pull == nil}
	}
	return r
}

// printCreated prints what was detected and chosen, and the summary;
// envKeys are the keys given with --env-file and --env.
func printCreated(w io.Writer, res *provision.Created, im *registry.Image, envKeys []string, took time.Duration) error {
	p := res.Paths
	fmt.Fprintf(w, "Init: detected %s (%s); mode %s: %s\n", res.Detection.Kind, res.Detection.Evidence, res.Mode, res.ModeReason)
	if f := res.Probe; f != nil {
		if res.ProbeCached {
			fmt.Fprintf(w, "Probe (kept from an earlier pull of this image): %s\n", probeLine(f))
		} else {
			fmt.Fprintf(w, "Probe: %s\n", probeLine(f))
		}
	}
	if res.Init.MadeUsr {
		fmt.Fprintln(w, "The image has no /usr: made an empty one, without which systemd-nspawn refuses the tree.")
	}
	fmt.Fprintf(w, "\nMachine %s created from %s@%s in %.1fs.\n", p.Name, registry.DisplayName(im.Ref), im.Digest, took.Seconds())
	if res.YggAddress.IsValid() {
		fmt.Fprintf(w, "  Yggdrasil address  %s\n", res.YggAddress)
	} else {
		fmt.Fprintf(w, "  Yggdrasil address  none (template %s: the machine uses the host's addresses)\n", man8env.TemplateHostNetwork)
	}
	switch {
	case res.Root != nil && res.Strict:
		fmt.Fprintf(w, "  root file system   %s -> %s (strict: the image's root, shared and read-only; state lives in volumes)\n", p.Rootfs, res.Root.Path)
	case res.Root != nil:
		fmt.Fprintf(w, "  root file system   %s (a btrfs snapshot of the image's root %s)\n", p.Rootfs, res.Root.Path)
	default:
		fmt.Fprintf(w, "  root file system   %s\n", p.Rootfs)
	}
	fmt.Fprintf(w, "  settings           %s (read by nspawn as %s)\n", p.Settings, p.SettingsLink)
	fmt.Fprintf(w, "  environment        %s\n", p.Env)
	if len(envKeys) > 0 {
		fmt.Fprintf(w, "    given at pull    %s\n", strings.Join(envKeys, ", "))
	}
	for _, v := range res.Volumes {
		if v.Kind == machine.VolumeSkip {
			fmt.Fprintf(w, "  volume %s  not mounted\n", v.Path)
			continue
		}
		fmt.Fprintf(w, "  volume %s  %s (%s)\n", v.Path, v.Host, v.Kind)
	}
	_, err := fmt.Fprintf(w, "\nStart it with 'mbctl machines start %s' (systemd) or 'mbctl machines run %s' (foreground).\n", p.Name, p.Name)
	return err
}

// probeLine sums up the probe's findings on one line.
func probeLine(f *probe.Findings) string {
	if f.Early != nil {
		return fmt.Sprintf("the app exited by itself %dms after it started%s (the probe runs it without network, in %.1fs)",
			f.Early.After.Milliseconds(), exitStatus(f.Early.Status), f.Took.Seconds())
	}
	v, why := f.AsPID1()
	caught := "nothing"
	if names := f.Caught.Names(); len(names) > 0 {
		caught = strings.Join(names, ", ")
	}
	return fmt.Sprintf("as PID 1 %s (%s); catches %s; reaps: %s; stop: %s (in %.1fs)", verdictWord(v), why, caught, f.ReapText(), f.StopText(), f.Took.Seconds())
}

func verdictWord(v probe.Verdict) string {
	switch v {
	case probe.Yes:
		return "it behaves"
	case probe.No:
		return "it does not behave"
	}
	return "unclear"
}

// initModeNames lists the --init-mode values.
func initModeNames() []string {
	var out []string
	for _, m := range imageinit.Modes() {
		out = append(out, string(m))
	}
	return out
}

// templateHelp lists the templates, one line each.
func templateHelp() string {
	var b strings.Builder
	for _, t := range man8env.Templates() {
		fmt.Fprintf(&b, "  %-17s %s\n", t, man8env.TemplateSummary(t))
	}
	return strings.TrimSuffix(b.String(), "\n")
}
