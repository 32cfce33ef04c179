package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/host/uplink"
)

// MachinesCloneOptions are the inputs of `machines clone`.
type MachinesCloneOptions struct {
	Pull MachinesPullOptions
	Src  string
}

// NewCmdMachinesClone builds `machines clone`; runF, if not nil, replaces
// machinesCloneRun (tests).
func NewCmdMachinesClone(f *Factory, runF func(context.Context, *MachinesCloneOptions) error) *cobra.Command {
	opts := &MachinesCloneOptions{Pull: MachinesPullOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Getenv: f.Getenv, Ask: f.prompter().ask, RunProbe: probe.Run, IPv6Uplink: uplink.DecideHere}}
	po := &opts.Pull
	cmd := &cobra.Command{
		Use:   "clone SRC NEW",
		Short: "Create another machine from a machine's image and settings",
		Long: `Create machine NEW from machine SRC's image, at the exact digest SRC runs,
with SRC's template, init mode, strictness (a strict SRC's clone shares
its image root), command and the variables you set in SRC's man8env.env.
NEW has its own name, Yggdrasil address, config dir and storage dir: its
volumes are asked for anew (or answered with --volume, --yes), and start
with the image's content, not SRC's data.

--cmd and --entrypoint give NEW a command of its own (another role of the
same image, as in a cluster); --env and --env-file add or change variables.
Not copied: SRC's secrets ('mbctl machines secret set NEW ...'), hand
edits of SRC's container.nspawn, which name SRC's own dirs, and the ports
SRC publishes on the host (a host port belongs to one machine): give NEW
its own with --publish.`,
		Example: `  # a second volume server of a SeaweedFS cluster
  mbctl machines clone sw-volume sw-volume2 --yes

  # another role of the same image
  mbctl machines clone sw-master sw-filer --yes \
      --cmd "filer -master='[$(mbctl address get sw-master)]:9333'"`,
		Args:              exactArgs("SRC", "NEW"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Src, po.Name = args[0], args[1]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesCloneRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&po.Volumes, "volume", nil, "where a volume of NEW lives: PATH=config|data|skip|/abs/host/dir (repeatable)")
	fl.StringArrayVarP(&po.Env, "env", "e", nil, "set a variable of NEW's app: `KEY=VALUE` (repeatable; wins over SRC's)")
	fl.StringArrayVar(&po.EnvFiles, "env-file", nil, "set NEW's variables from `FILE` (repeatable)")
	var entrypoint, cmdLine string
	fl.StringVar(&entrypoint, "entrypoint", "", "NEW's own entrypoint, as `WORDS` quoted like a shell's")
	fl.StringVar(&cmdLine, "cmd", "", "NEW's own arguments instead of SRC's, as `WORDS` quoted like a shell's")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("entrypoint") {
			po.Entrypoint = &entrypoint
		}
		if cmd.Flags().Changed("cmd") {
			po.Cmd = &cmdLine
		}
		return nil
	}
	fl.StringArrayVarP(&po.Publish, "publish", "p", nil, "publish a port of NEW on the host: `HOSTPORT[:PORT][/tcp|udp]` (repeatable; SRC's are not copied)")
	fl.BoolVar(&po.NoProbe, "no-probe", false, "do not probe how the entrypoint behaves as PID 1")
	fl.BoolVarP(&po.Yes, "yes", "y", false, "never ask: unanswered volumes become data volumes")
	fl.BoolVarP(&po.Quiet, "quiet", "q", false, "no progress output")
	fl.BoolVar(&po.JSON, "json", false, "print the new machine as one JSON object on stdout (as machines pull does)")
	return cmd
}

func machinesCloneRun(ctx context.Context, opts *MachinesCloneOptions) error {
	po := &opts.Pull
	if err := machine.ValidateName(opts.Src); err != nil {
		return err
	}
	cfg, _, err := po.Config()
	if err != nil {
		return err
	}
	src := machine.PathsFor(cfg.Paths, opts.Src)
	env, err := envfile.ReadFile(src.Env)
	if err != nil {
		return fmt.Errorf("machine %s cannot be cloned without its environment file: %w", opts.Src, err)
	}
	ref, digest := valueOrEmpty(env, man8env.KeyImageURL), valueOrEmpty(env, man8env.KeyDigest)
	if ref == "" || digest == "" {
		return fmt.Errorf("machine %s: %s lacks %s or %s, which name its image", opts.Src, src.Env, man8env.KeyImageURL, man8env.KeyDigest)
	}
	po.Image, po.Pin = ref, digest
	po.Template = valueOrEmpty(env, man8env.KeyTemplate)
	po.InitMode = valueOrEmpty(env, man8env.KeyInitMode)
	if t, _ := man8env.ParseTemplate(po.Template); t == man8env.TemplateMacvlan && po.Uplink == "" {
		po.Uplink = settingsUplink(src.Settings) // on the uplink of SRC
	}
	po.Strict = valueOrEmpty(env, man8env.KeyStrict) == "yes"
	own, err := provision.UserEnv(src)
	if err != nil {
		return err
	}
	for _, v := range own {
		if v.Key == man8env.KeyArgs {
			// SRC's own command, unless NEW gets one: the whole line
			// as the entrypoint.
			if po.Entrypoint == nil && po.Cmd == nil {
				line := v.Value
				po.Entrypoint, po.Cmd = &line, new(string)
			}
			continue
		}
		po.Inherited = append(po.Inherited, v)
	}
	po.Log.Debug("cloning", "src", opts.Src, "image", pinned(ref, digest), "config", filepath.Dir(src.Env))
	return machinesPullRun(ctx, po)
}

// settingsUplink is the first interface that the MACVLAN= of the settings
// file at path names, or "" (no file, no MACVLAN=).
func settingsUplink(path string) string {
	s, err := unitfile.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, v := range s.GetAll("Network", "MACVLAN") {
		if f := strings.Fields(v); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}
