package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	udiff "github.com/aymanbagabas/go-udiff"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/protect"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

// A machine's generations. Upgrade and Rollback keep one step back:
//
//	<machines>/NAME                          the rootfs
//	<machines>/.NAME.mbctl-previous          the rootfs before the last upgrade
//	<configs>/NAME/container.nspawn, man8env.env   the files
//	<configs>/NAME/.mbctl/base.nspawn, base.env    what mbctl generated for the rootfs's image
//	<configs>/NAME/.mbctl/previous/          the four files before the last upgrade
//
// The base files are the merge base of the next upgrade (see
// machinefiles.MergeEnv): they tell the values the user changed from those
// mbctl wrote. Nothing of it is inside the machine: the config dir is not
// bound as a whole.
const (
	stateDir     = ".mbctl"
	baseSettings = "base.nspawn"
	baseEnv      = "base.env"
	previousDir  = "previous"
)

// StateDir is where mbctl keeps machine p's generations in its config dir.
func StateDir(p machine.Paths) string { return filepath.Join(p.ConfigDir, stateDir) }

// PreviousRootfs is the rootfs machine p had before its last upgrade.
func PreviousRootfs(p machine.Paths) string { return p.Previous }

// HasBase reports whether machine p has a recorded merge base.
func HasBase(p machine.Paths) bool {
	_, err := os.Stat(filepath.Join(StateDir(p), baseEnv))
	return err == nil
}

// WriteBase records settings and env as what mbctl generated for machine
// p's current image, the merge base of its next upgrade.
func WriteBase(p machine.Paths, settings *unitfile.File, env *envfile.File) error {
	dir := StateDir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFiles(dir, map[string]any{baseSettings: settings, baseEnv: env})
}

// writeBase records, in the staged config dir, the files as the image
// alone makes them: the merge base of the machine's first upgrade. The
// variables given at pull are left out: they are the user's.
func (c *creation) writeBase(params machinefiles.Params) error {
	// A command, variables and published ports given at pull are the
	// user's, and so is MAN8S_IPV6=optional for a host without IPv6: an
	// upgrade keeps them like any of the user's edits.
	params.Env, params.Ports, params.Image, params.NoIPv6Uplink = nil, nil, c.o.Image.Config.Config, ""
	settings, err := machinefiles.Settings(params)
	if err != nil {
		return err
	}
	env, err := machinefiles.Env(params)
	if err != nil {
		return err
	}
	dir := c.stagedPath(StateDir(c.p))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFiles(dir, map[string]any{baseSettings: settings, baseEnv: env})
}

// writeFiles writes each unitfile or envfile into dir under its name.
func writeFiles(dir string, files map[string]any) error {
	for name, f := range files {
		var err error
		switch f := f.(type) {
		case *unitfile.File:
			err = unitfile.WriteFileAtomic(filepath.Join(dir, name), f, 0o644)
		case *envfile.File:
			err = envfile.WriteFileAtomic(filepath.Join(dir, name), f, 0o600)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// UpgradeOptions say which machine Upgrade takes to which image.
type UpgradeOptions struct {
	Name   string
	Dirs   config.Paths
	Bridge string
	// Uplink is the macvlan template's host interface (network.uplink),
	// used when the machine's settings do not name one (MACVLAN=).
	Uplink string
	// Image is the resolved new image; Ref the reference to record.
	Image *registry.Image
	Ref   string
	// Base, if the machine has no recorded base (made by an mbctl before
	// upgrades), is its old image's config: the base is generated from
	// it. Without either, every value of the files counts as the user's.
	Base *registry.Image
	// Subnet is the host's Yggdrasil subnet; invalid keeps the machine's
	// address.
	Subnet netip.Prefix
	// Mode is the requested init mode (imageinit.Auto to detect).
	Mode imageinit.Mode
	// Volumes answer for the new image's volumes that the machine does
	// not bind yet.
	Volumes []machine.Volume
	Cache   *cache.Cache
	Pull    pull.Options
	Init    initinstall.Sources
	Version string
	Now     time.Time
	Log     *slog.Logger
	// DryRun stops before anything of the machine changes: the result
	// holds the merge and the diffs.
	DryRun bool
	// Probe, if set, probes the new image's entrypoint as machines pull
	// does (Options.Probe) for --init-mode auto.
	Probe func(context.Context, probe.Input) (*probe.Findings, error)
	// Adopt takes a machine whose rootfs and links are gone (removed with
	// --keep-data, or a config dir copied from another host): the new
	// rootfs goes where the old one was, and the links are made again.
	Adopt bool
	// BeforeStep, if set, runs before each step (UpgradeSteps) and between
	// the swaps of the install ("swap:" + what); an error aborts there.
	BeforeStep func(step string) error
}

// Upgraded describes an upgrade.
type Upgraded struct {
	Paths        machine.Paths
	From, To     string
	Mode         imageinit.Mode
	ModeReason   string
	Changes      []machinefiles.Change
	SettingsDiff string
	EnvDiff      string
	// NewVolumes are the new image's volumes the machine did not bind;
	// ReusedVolumes the dirs of them that existed (an earlier upgrade's,
	// rolled back since), bound again as they are.
	NewVolumes    []machine.Volume
	ReusedVolumes []string
	// GuessedBase tells that the machine had no recorded base.
	GuessedBase string
	Pull        *pull.Result
	Init        initinstall.Result
	Protect     protect.Result
	Applied     bool
}

// upgrade is the state of one Upgrade.
type upgrade struct {
	o   UpgradeOptions
	p   machine.Paths
	res *Upgraded
	j   *journal.Journal

	rootfs string // the new rootfs, staged
	next   string // the new files, staged in the state dir
	// base, user and nextFiles are the three sides of the merge.
	baseSettings, userSettings, nextSettings *unitfile.File
	baseEnv, userEnv, nextEnv                *envfile.File
	detection                                imageinit.Detection
	staged                                   map[string]string
	// filled says how the new rootfs was made.
	filled rootfsFilled
}

// UpgradeSteps are the names of Upgrade's steps, in order.
func UpgradeSteps() []string { return stepNames(upgradeSteps()) }

func upgradeSteps() []step[*upgrade] {
	return []step[*upgrade]{
		{"read", (*upgrade).read},
		{"unpack", (*upgrade).unpack},
		{"volumes", (*upgrade).volumes},
		{"merge", (*upgrade).merge},
		{"init", (*upgrade).installInit},
		{"protect", (*upgrade).protect},
		{"swap", (*upgrade).swap},
	}
}

// Upgrade takes machine o.Name to o.Image: it unpacks the image beside the
// rootfs, installs man8s-init, merges the image's config into the
// machine's files (the user's edits win, see machinefiles.MergeEnv), makes
// the new image's volumes, then swaps the new rootfs and files in, keeping
// the old ones as the rollback point. The storage dir and existing volumes
// are never touched. On an error, a cancellation or a crash (journal) the
// machine is as it was; after the swap it is the new one.
func Upgrade(ctx context.Context, o UpgradeOptions) (res *Upgraded, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := machine.ValidateName(o.Name); err != nil {
		return nil, err
	}
	u := &upgrade{o: o, p: machine.PathsFor(o.Dirs, o.Name), staged: map[string]string{}}
	u.res = &Upgraded{Paths: u.p, To: o.Image.Digest.String()}
	if o.Dirs.Scratch == "" {
		return nil, errors.New("upgrading a machine: no journal dir (paths.scratch) configured")
	}
	// A dead run's half changes go first (dropOld relies on it).
	unlock, err := lockRecovered(o.Dirs, u.p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer func() { u.filled.done() }()
	err = journaled(o.Dirs, "machines upgrade "+o.Name, !o.DryRun, o.Log, func(j *journal.Journal) error {
		u.j = j
		for _, st := range upgradeSteps() {
			if st.name == "init" && o.DryRun {
				break
			}
			if err := u.before(ctx, st.name); err != nil {
				return err
			}
			if err := st.run(u, ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		u.dropOld()
	}
	u.res.Applied = !o.DryRun
	return u.res, nil
}

func (u *upgrade) before(ctx context.Context, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u.o.BeforeStep != nil {
		return u.o.BeforeStep(step)
	}
	return nil
}

// read reads the machine's files and the merge base.
func (u *upgrade) read(context.Context) error {
	p := u.p
	dropOld(p, u.o.Log) // a crash after an earlier commit
	if fi, err := os.Stat(p.Rootfs); u.o.Adopt {
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("machine %s has a root file system at %s: upgrade it with 'mbctl machines upgrade %s' instead", p.Name, p.Rootfs, p.Name)
		}
	} else if err != nil || !fi.IsDir() {
		return fmt.Errorf("machine %s has no root file system at %s: rebuild it with 'mbctl machines rebuild %s'", p.Name, p.Rootfs, p.Name)
	}
	var err error
	if u.userSettings, err = unitfile.ReadFile(p.Settings); err != nil {
		return fmt.Errorf("machine %s: %w", p.Name, err)
	}
	if u.userEnv, err = envfile.ReadFile(p.Env); err != nil {
		return fmt.Errorf("machine %s: %w", p.Name, err)
	}
	u.res.From, _ = u.userEnv.Get(man8env.KeyDigest)
	dir := StateDir(p)
	bs, serr := unitfile.ReadFile(filepath.Join(dir, baseSettings))
	be, eerr := envfile.ReadFile(filepath.Join(dir, baseEnv))
	switch {
	case serr == nil && eerr == nil:
		u.baseSettings, u.baseEnv = bs, be
		return nil
	case !errors.Is(serr, fs.ErrNotExist) && serr != nil:
		return serr
	case !errors.Is(eerr, fs.ErrNotExist) && eerr != nil:
		return eerr
	}
	if u.o.Base != nil {
		u.res.GuessedBase = "generated from the old image's config: no record of what mbctl wrote at pull"
		return nil // generated in merge, with the same parameters as next
	}
	u.res.GuessedBase = "no record of what mbctl wrote at pull and the old image is gone: every value of the files counts as yours"
	u.baseSettings, u.baseEnv = cloneSettings(u.userSettings), cloneEnv(u.userEnv)
	return nil
}

func cloneSettings(f *unitfile.File) *unitfile.File {
	c, _ := unitfile.Parse(bytes.NewReader(f.Bytes()))
	return c
}

func cloneEnv(f *envfile.File) *envfile.File {
	c, _ := envfile.Parse(bytes.NewReader(f.Bytes()))
	return c
}

// unpack applies the new image into a staging dir beside the rootfs and
// detects its init.
func (u *upgrade) unpack(ctx context.Context) (err error) {
	if u.rootfs, err = u.j.MkdirUnique(filepath.Dir(u.p.Rootfs), StagingPrefix(u.p.Rootfs)); err != nil {
		return fmt.Errorf("creating a staging dir next to %s: %w", u.p.Rootfs, err)
	}
	src := rootfsSource{
		Dirs: u.o.Dirs, Image: u.o.Image, Ref: u.o.Ref, Strict: valueOf(u.userEnv, man8env.KeyStrict) == "yes",
		Cache: u.o.Cache, Pull: u.o.Pull, Init: u.o.Init, Now: u.o.Now, Log: u.o.Log,
	}
	if u.filled, err = src.fill(ctx, u.rootfs); err != nil {
		return err
	}
	u.res.Pull = u.filled.Pull
	if u.filled.Prepared {
		u.res.Init, u.res.Protect = u.filled.Root.Init, u.filled.Root.Protect
	}
	cfg := u.o.Image.Config.Config
	if u.detection, err = imageinit.Detect(u.rootfs, slices.Concat(cfg.Entrypoint, cfg.Cmd)); err != nil {
		return err
	}
	if mode, ok := u.keptMode(cfg); ok {
		// The probe judged this entrypoint already: a new version of the
		// same command keeps the mode, and the upgrade is not held up by
		// running it again.
		u.res.Mode = mode
		u.res.ModeReason = fmt.Sprintf("auto: the image runs the same command as before (%s), so the machine's init mode stays", valueOf(u.baseEnv, man8env.KeyArgs))
		return nil
	}
	var findings *probe.Findings
	if u.o.Probe != nil && u.o.Mode == imageinit.Auto {
		// As at pull: the probe decides whether the image's init may be
		// PID 1; without it an upgrade would take a machine the probe
		// put in exec-pid1 back to supervise.
		in, err := ProbeInput(u.rootfs, machinefiles.Params{
			Name: u.p.Name, ImageRef: u.o.Ref, ImageDigest: u.o.Image.Digest.String(), Image: cfg, Version: u.o.Version,
		})
		if err == nil {
			in.Scratch, in.Journal, in.BeforeStep = u.o.Dirs.Scratch, u.j, u.o.BeforeStep
			findings, err = u.o.Probe(ctx, in)
		}
		if err != nil {
			findings = nil
			u.o.Log.Warn("init probe failed; the entrypoint's name decides the init mode", "machine", u.p.Name, "err", err)
		}
	}
	u.res.Mode, u.res.ModeReason = imageinit.Choose(u.o.Mode, u.detection, findings)
	return nil
}

// keptMode returns the machine's init mode when --init-mode is auto and
// the new image runs the same command as the old one did (the recorded
// base says what that was): then the choice made at pull, probe and all,
// stands.
func (u *upgrade) keptMode(cfg v1.Config) (imageinit.Mode, bool) {
	if u.o.Mode != imageinit.Auto || u.baseEnv == nil {
		return "", false
	}
	args, err := machinefiles.ApplicationArgs(cfg)
	if err != nil || args != valueOf(u.baseEnv, man8env.KeyArgs) {
		return "", false
	}
	mode, err := imageinit.ParseMode(valueOf(u.userEnv, man8env.KeyInitMode))
	if err != nil || (mode != imageinit.Supervise && mode != imageinit.ExecPID1) {
		return "", false
	}
	return mode, true
}

// bound returns the machine paths the settings bind.
func bound(f *unitfile.File) map[string]bool {
	out := map[string]bool{}
	for _, key := range []string{"Bind", "BindReadOnly"} {
		for _, v := range f.GetAll("Files", key) {
			if _, cont, err := machine.ParseBind(v); err == nil {
				out[filepath.Clean(cont)] = true
			}
		}
	}
	return out
}

// volumes makes the dirs of the new image's volumes that the machine does
// not bind yet, with the image's content, as machines pull does.
func (u *upgrade) volumes(context.Context) error {
	have := bound(u.userSettings)
	answers := map[string]machine.Volume{}
	for _, v := range u.o.Volumes {
		clean, err := machine.CleanVolumePath(v.Path)
		if err != nil {
			return err
		}
		v.Path = clean
		answers[clean] = v
	}
	var vols []machine.Volume
	for path := range u.o.Image.Config.Config.Volumes {
		clean, err := machine.CleanVolumePath(path)
		if err != nil {
			return fmt.Errorf("image volume %q: %w", path, err)
		}
		if have[clean] {
			continue
		}
		v, ok := answers[clean]
		if !ok {
			return fmt.Errorf("the new image declares volume %s, which machine %s does not have: answer with --volume %s=config|data|skip|/host/dir", clean, u.p.Name, clean)
		}
		vols = append(vols, v)
	}
	slices.SortFunc(vols, func(a, b machine.Volume) int { return strings.Compare(a.Path, b.Path) })
	placed, err := placeVolumes(vols, u.p)
	if err != nil {
		return err
	}
	for _, v := range placed {
		if v.Kind == machine.VolumeSkip {
			u.res.NewVolumes = append(u.res.NewVolumes, v)
			continue
		}
		if v.Kind == machine.VolumeCustom {
			if err := machine.CheckCustomDir(v.Host, u.p); err != nil {
				return fmt.Errorf("volume %s: %w", v.Path, err)
			}
		} else if fi, err := os.Lstat(v.Host); err == nil {
			// The machine's own dir for it: made by an upgrade that was
			// rolled back since. Its data is the machine's: bind it again.
			if !fi.IsDir() {
				return fmt.Errorf("volume %s: %s exists and is not a dir: move it away or answer --volume %s=/another/dir", v.Path, v.Host, v.Path)
			}
			u.res.ReusedVolumes = append(u.res.ReusedVolumes, v.Host)
			u.res.NewVolumes = append(u.res.NewVolumes, v)
			continue
		}
		parent := filepath.Dir(v.Host)
		if _, err := ensureDir(parent, 0o755, func(p string) error {
			return u.j.Log(journal.Record{Op: journal.OpParent, Path: p})
		}); err != nil {
			return err
		}
		dir, err := u.j.MkdirUnique(parent, StagingPrefix(v.Host))
		if err != nil {
			return err
		}
		if err := copyVolume(u.rootfs, v.Path, dir); err != nil {
			return fmt.Errorf("volume %s: %w", v.Path, err)
		}
		u.staged[v.Host] = dir
		u.res.NewVolumes = append(u.res.NewVolumes, v)
	}
	return nil
}

// params returns what machinefiles generates the files from for image im.
func (u *upgrade) params(im *registry.Image, binds []machinefiles.Bind, mode imageinit.Mode, det imageinit.Detection) (machinefiles.Params, error) {
	get := func(k string) string { v, _ := u.userEnv.Get(k); return v }
	addr, err := netip.ParseAddr(get(man8env.KeyYggAddress))
	if u.o.Subnet.IsValid() {
		addr, err = yggaddr.Address(u.o.Subnet, u.p.Name)
	}
	tmpl := get(man8env.KeyTemplate)
	if tmpl == "" {
		tmpl = man8env.TemplateNetworkIsolated
	}
	if t, _ := man8env.ParseTemplate(tmpl); !man8env.HasOwnNetwork(t) {
		addr, err = netip.Addr{}, nil // none of its own
	}
	if err != nil {
		return machinefiles.Params{}, fmt.Errorf("machine %s: its Yggdrasil address: %w", u.p.Name, err)
	}
	created, err := time.Parse(time.RFC3339, get(man8env.KeyCreatedAt))
	if err != nil {
		created = u.o.Now
	}
	return machinefiles.Params{
		Name: u.p.Name, Template: tmpl, Bridge: u.o.Bridge, Uplink: u.uplink(), YggAddress: addr,
		ImageRef: u.o.Ref, ImageDigest: im.Digest.String(), Image: im.Config.Config,
		Mode: mode, KillSignal: imageinit.KillSignal(mode, det),
		EnvFile: u.p.Env, Binds: binds, Version: u.o.Version, Created: created,
	}, nil
}

// uplink is the macvlan template's uplink: the one mbctl wrote (the base
// settings'), else the user's MACVLAN=, else the configured one.
func (u *upgrade) uplink() string {
	for _, f := range []*unitfile.File{u.baseSettings, u.userSettings} {
		if f == nil {
			continue
		}
		if v, ok := f.Get("Network", "MACVLAN"); ok && strings.TrimSpace(v) != "" {
			return strings.Fields(v)[0]
		}
	}
	return u.o.Uplink
}

// merge generates the files for the new image and merges them into the
// user's.
func (u *upgrade) merge(context.Context) error {
	// The volumes the base binds (the machine's, as pulled) plus the new ones.
	var binds []machinefiles.Bind
	src := u.baseSettings
	if src == nil {
		src = u.userSettings
	}
	for _, v := range src.GetAll("Files", "Bind") {
		host, cont, err := machine.ParseBind(v)
		if err != nil || host == "" || host == u.p.Env || !strings.HasSuffix(v, ":idmap") {
			continue
		}
		binds = append(binds, machinefiles.Bind{Host: host, Container: cont})
	}
	baseBinds := slices.Clone(binds)
	for _, v := range u.res.NewVolumes {
		if v.Kind != machine.VolumeSkip {
			binds = append(binds, machinefiles.Bind{Host: v.Host, Container: v.Path})
		}
	}
	params, err := u.params(u.o.Image, binds, u.res.Mode, u.detection)
	if err != nil {
		return err
	}
	if u.nextSettings, err = machinefiles.Settings(params); err != nil {
		return err
	}
	if u.nextEnv, err = machinefiles.Env(params); err != nil {
		return err
	}
	if u.baseSettings == nil {
		// No record: generate what the old image gave, with the mode the
		// machine runs in.
		mode := imageinit.Mode(strings.TrimSpace(valueOf(u.userEnv, man8env.KeyInitMode)))
		if mode != imageinit.Supervise && mode != imageinit.ExecPID1 {
			mode = imageinit.Supervise
		}
		bp, err := u.params(u.o.Base, baseBinds, mode, imageinit.Detection{})
		if err != nil {
			return err
		}
		bp.KillSignal, _ = u.userSettings.Get("Exec", "KillSignal")
		if u.baseSettings, err = machinefiles.Settings(bp); err != nil {
			return fmt.Errorf("generating the old image's files: %w", err)
		}
		if u.baseEnv, err = machinefiles.Env(bp); err != nil {
			return fmt.Errorf("generating the old image's files: %w", err)
		}
	}
	oldSettings, oldEnv := string(u.userSettings.Bytes()), string(u.userEnv.Bytes())
	sc, err := machinefiles.MergeSettings(u.baseSettings, u.userSettings, u.nextSettings)
	if err != nil {
		return fmt.Errorf("merging %s: %w", u.p.Settings, err)
	}
	// The digest and version describe the rootfs; the reference is what
	// the upgrade followed.
	ec, err := machinefiles.MergeEnv(u.baseEnv, u.userEnv, u.nextEnv, man8env.KeyDigest, man8env.KeyVersion, man8env.KeyImageURL)
	if err != nil {
		return fmt.Errorf("merging %s: %w", u.p.Env, err)
	}
	u.res.Changes = append(sc, ec...)
	u.res.SettingsDiff = udiff.Unified(u.p.Settings, u.p.Settings+" (upgraded)", oldSettings, string(u.userSettings.Bytes()))
	u.res.EnvDiff = udiff.Unified(u.p.Env, u.p.Env+" (upgraded)", oldEnv, string(u.userEnv.Bytes()))

	// The new files, staged in the state dir: the merged files and the
	// new base.
	state := StateDir(u.p)
	if _, err := ensureDir(state, 0o700, func(p string) error {
		return u.j.Log(journal.Record{Op: journal.OpParent, Path: p})
	}); err != nil {
		return err
	}
	if u.next, err = u.j.MkdirUnique(state, ".next-"); err != nil {
		return err
	}
	return writeFiles(u.next, map[string]any{
		machine.SettingsFile: u.userSettings, machine.EnvFile: u.userEnv,
		baseSettings: u.nextSettings, baseEnv: u.nextEnv,
	})
}

func valueOf(f *envfile.File, k string) string { v, _ := f.Get(k); return v }

func (u *upgrade) installInit(context.Context) (err error) {
	if u.filled.Prepared {
		return nil // the image root's
	}
	u.res.Init, err = initinstall.Install(u.rootfs, u.o.Init)
	return err
}

func (u *upgrade) protect(context.Context) (err error) {
	if u.filled.Prepared {
		return nil
	}
	u.res.Protect, err = protect.Protect(u.rootfs)
	return err
}

// swap puts the new rootfs, files and volumes in place. Each move is
// journaled: a crash before the commit moves everything back.
func (u *upgrade) swap(ctx context.Context) error {
	p := u.p
	if !isLink(u.rootfs) {
		if err := os.Chmod(u.rootfs, 0o755); err != nil {
			return err
		}
	}
	for final, dir := range u.staged {
		if err := u.before(ctx, "swap:volume"); err != nil {
			return err
		}
		if err := u.j.Log(journal.Record{Op: journal.OpRename, From: dir, Path: final}); err != nil {
			return err
		}
		if err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("moving %s to %s: %w", dir, final, err)
		}
	}
	// The rollback point of the last upgrade goes aside (deleted after the
	// commit, put back on a failure).
	prevRootfs, prevFiles := PreviousRootfs(p), filepath.Join(StateDir(p), previousDir)
	for _, old := range []string{prevRootfs, prevFiles} {
		if _, err := os.Lstat(old); err != nil {
			continue
		}
		if err := u.before(ctx, "swap:old"); err != nil {
			return err
		}
		if err := u.j.Move(old, old+".old"); err != nil {
			return err
		}
	}
	if err := u.before(ctx, "swap:rootfs"); err != nil {
		return err
	}
	if u.o.Adopt {
		// No rootfs to keep: the new one goes in its place.
		if err := u.j.Log(journal.Record{Op: journal.OpRename, From: u.rootfs, Path: p.Rootfs}); err != nil {
			return err
		}
		if err := unix.Renameat2(unix.AT_FDCWD, u.rootfs, unix.AT_FDCWD, p.Rootfs, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("moving %s to %s: %w", u.rootfs, p.Rootfs, err)
		}
	} else {
		if err := u.j.Exchange(u.rootfs, p.Rootfs); err != nil {
			return err
		}
		if err := u.j.Move(u.rootfs, prevRootfs); err != nil {
			return err
		}
	}
	state := StateDir(p)
	for _, f := range []struct{ staged, final string }{
		{filepath.Join(u.next, machine.SettingsFile), p.Settings},
		{filepath.Join(u.next, machine.EnvFile), p.Env},
		{filepath.Join(u.next, baseSettings), filepath.Join(state, baseSettings)},
		{filepath.Join(u.next, baseEnv), filepath.Join(state, baseEnv)},
	} {
		if err := u.before(ctx, "swap:files"); err != nil {
			return err
		}
		if _, err := os.Lstat(f.final); errors.Is(err, fs.ErrNotExist) {
			// No base yet: the staged one moves; previous/ gets none.
			if err := u.j.Move(f.staged, f.final); err != nil {
				return err
			}
			continue
		}
		if err := u.j.Exchange(f.staged, f.final); err != nil {
			return err
		}
	}
	if u.o.Adopt {
		// The files before the adoption are not a runnable machine
		// (their rootfs is gone): no rollback point. They go after the
		// commit (dropOld).
		return makeLinks(u.j, p, func(what string) error { return u.before(ctx, "swap:"+what) })
	}
	return u.j.Move(u.next, prevFiles)
}

// makeLinks makes machine p's settings and machinectl links where they are
// missing, journaled, and returns the links it made.
func makeLinks(j *journal.Journal, p machine.Paths, before func(what string) error) error {
	_, err := makeLinksList(j, p, before)
	return err
}

func makeLinksList(j *journal.Journal, p machine.Paths, before func(what string) error) ([]string, error) {
	var made []string
	for _, l := range []struct{ what, target, link string }{
		{"settings link", p.Settings, p.SettingsLink}, {"machinectl link", p.Rootfs, p.ImageLink},
	} {
		if _, err := os.Lstat(l.link); err == nil {
			continue
		}
		if err := before(l.what); err != nil {
			return made, err
		}
		if err := os.MkdirAll(filepath.Dir(l.link), 0o755); err != nil {
			return made, err
		}
		if err := j.Log(journal.Record{Op: journal.OpLink, Path: l.link, Target: l.target}); err != nil {
			return made, err
		}
		if err := os.Symlink(l.target, l.link); err != nil {
			return made, fmt.Errorf("creating link %s: %w", l.link, err)
		}
		made = append(made, l.link)
	}
	return made, nil
}

func (u *upgrade) dropOld() {
	dropOld(u.p, u.o.Log)
	if u.o.Adopt && u.next != "" {
		if err := os.RemoveAll(u.next); err != nil {
			u.o.Log.Warn("deleting the files before the adoption", "path", u.next, "err", err)
		}
	}
}

// dropOld deletes the rollback point an upgrade replaced. A crash between
// the upgrade's commit and this leaves "*.old" dirs, which the next
// upgrade or rollback of the machine deletes (under the machine's lock,
// after dead runs were rolled back: then they are no run's).
func dropOld(p machine.Paths, log *slog.Logger) {
	olds := []string{PreviousRootfs(p) + ".old", filepath.Join(StateDir(p), previousDir) + ".old"}
	next, _ := filepath.Glob(filepath.Join(StateDir(p), ".next-*"))
	for _, old := range append(olds, next...) {
		if err := btrfs.RemoveAll(old); err != nil {
			log.Warn("deleting the replaced rollback point", "path", old, "err", err)
		}
	}
}

// LockMachine takes machine p's lock, which upgrade, rollback and rebuild
// hold while they change it, and returns its release. It fails at once if
// another run holds it.
func LockMachine(p machine.Paths) (func(), error) {
	dir := StateDir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("machine %s is being changed by another mbctl run (upgrade, rollback or rebuild): wait for it to end", p.Name)
		}
		return nil, fmt.Errorf("locking machine %s: %w", p.Name, err)
	}
	return func() { f.Close() }, nil
}

// UserEnv returns the variables of machine p's man8env.env that its user
// set (added, or changed from what mbctl generated: the recorded base),
// in the file's order: the app's and man8s-init's settings, and the
// machine's own command (MAN8S_APPLICATION_ARGS) where it differs. A
// machine without a base counts every app variable as its user's.
func UserEnv(p machine.Paths) ([]machinefiles.EnvVar, error) {
	user, err := envfile.ReadFile(p.Env)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	base, err := envfile.ReadFile(filepath.Join(StateDir(p), baseEnv))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	vals := user.Map()
	var out []machinefiles.EnvVar
	for _, k := range user.Keys() {
		if k != man8env.KeyArgs && man8env.CheckUserKey(k) != nil {
			continue // mbctl's
		}
		if base != nil {
			if bv, ok := base.Get(k); ok && bv == vals[k] {
				continue
			}
		} else if k == man8env.KeyArgs {
			continue
		}
		out = append(out, machinefiles.EnvVar{Key: k, Value: vals[k]})
	}
	return out, nil
}

// lockRecovered takes machine p's lock (LockMachine) and then rolls back
// what dead runs left (journal.Recover): upgrade, rollback, rebuild and
// restore all start from a machine no half-done run is changing.
func lockRecovered(dirs config.Paths, p machine.Paths) (func(), error) {
	unlock, err := LockMachine(p)
	if err != nil {
		return nil, err
	}
	if _, err := journal.Recover(JournalDir(dirs), false); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// RolledBack describes a rollback.
type RolledBack struct {
	Paths machine.Paths `json:"paths"`
	// From is the digest the machine ran, To the one it runs now.
	From string `json:"from"`
	To   string `json:"to"`
}

// Rollback swaps machine name's rootfs and files with those it had before
// its last upgrade: one step back. A second Rollback undoes the first. The
// storage dir and volumes are not touched; a crash midway rolls the
// rollback back (journal).
func Rollback(dirs config.Paths, name string, log *slog.Logger) (res *RolledBack, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := machine.ValidateName(name); err != nil {
		return nil, err
	}
	p := machine.PathsFor(dirs, name)
	prevRootfs, prevFiles := PreviousRootfs(p), filepath.Join(StateDir(p), previousDir)
	if _, err := os.Stat(p.ConfigDir); err != nil {
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	unlock, err := lockRecovered(dirs, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, q := range []string{prevRootfs, prevFiles} {
		if _, err := os.Lstat(q); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("machine %s has no version to go back to (%s is missing): only an upgrade leaves one", name, q)
		}
	}
	dropOld(p, log)
	res = &RolledBack{Paths: p}
	if cur, err := envfile.ReadFile(p.Env); err == nil {
		res.From = valueOf(cur, man8env.KeyDigest)
	}
	if prev, err := envfile.ReadFile(filepath.Join(prevFiles, machine.EnvFile)); err == nil {
		res.To = valueOf(prev, man8env.KeyDigest)
	}
	err = journaled(dirs, "machines rollback "+name, true, log, func(j *journal.Journal) error {
		if err := j.Exchange(prevRootfs, p.Rootfs); err != nil {
			return err
		}
		state := StateDir(p)
		for _, f := range []struct{ prev, final string }{
			{filepath.Join(prevFiles, machine.SettingsFile), p.Settings},
			{filepath.Join(prevFiles, machine.EnvFile), p.Env},
			{filepath.Join(prevFiles, baseSettings), filepath.Join(state, baseSettings)},
			{filepath.Join(prevFiles, baseEnv), filepath.Join(state, baseEnv)},
		} {
			_, perr := os.Lstat(f.prev)
			_, ferr := os.Lstat(f.final)
			var err error
			switch {
			case perr == nil && ferr == nil:
				err = j.Exchange(f.prev, f.final)
			case perr == nil:
				err = j.Move(f.prev, f.final)
			case ferr == nil:
				err = j.Move(f.final, f.prev)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// RebuildOptions say which machine Rebuild makes a fresh rootfs for.
type RebuildOptions struct {
	Name string
	Dirs config.Paths
	// Image is the machine's image at the digest its files record.
	Image      *registry.Image
	Cache      *cache.Cache
	Pull       pull.Options
	Init       initinstall.Sources
	Log        *slog.Logger
	BeforeStep func(step string) error
}

// Rebuilt describes a rebuild.
type Rebuilt struct {
	Paths machine.Paths `json:"paths"`
	// Replaced tells that a rootfs was there (and is deleted); Links the
	// links that were missing and made again.
	Replaced bool                `json:"replaced"`
	Links    []string            `json:"links,omitempty"`
	Pull     *pull.Result        `json:"-"`
	Init     initinstall.Result  `json:"-"`
	Mode     imageinit.Detection `json:"-"`
}

// Rebuild makes machine o.Name's rootfs again from its config dir alone:
// the image at the recorded digest, unpacked, with man8s-init installed,
// swapped in for the rootfs (or put where it is missing), and the settings
// and machinectl links made where missing. The files, the storage dir and
// the volumes are not touched. Journaled like Upgrade.
func Rebuild(ctx context.Context, o RebuildOptions) (res *Rebuilt, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := machine.ValidateName(o.Name); err != nil {
		return nil, err
	}
	p := machine.PathsFor(o.Dirs, o.Name)
	if _, err := os.Stat(p.Settings); err != nil {
		return nil, fmt.Errorf("machine %s cannot be rebuilt without its settings: %w", p.Name, err)
	}
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		return nil, fmt.Errorf("machine %s cannot be rebuilt without its environment file: %w", p.Name, err)
	}
	unlock, err := lockRecovered(o.Dirs, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res = &Rebuilt{Paths: p}
	before := func(step string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if o.BeforeStep != nil {
			return o.BeforeStep(step)
		}
		return nil
	}
	var replaced string
	var filled rootfsFilled
	defer func() { filled.done() }()
	err = journaled(o.Dirs, "machines rebuild "+o.Name, true, o.Log, func(j *journal.Journal) error {
		if err := before("unpack"); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p.Rootfs), 0o700); err != nil {
			return err
		}
		stage, err := j.MkdirUnique(filepath.Dir(p.Rootfs), StagingPrefix(p.Rootfs))
		if err != nil {
			return fmt.Errorf("creating a staging dir next to %s: %w", p.Rootfs, err)
		}
		src := rootfsSource{
			Dirs: o.Dirs, Image: o.Image, Ref: valueOf(env, man8env.KeyImageURL), Strict: valueOf(env, man8env.KeyStrict) == "yes",
			Cache: o.Cache, Pull: o.Pull, Init: o.Init, Log: o.Log,
		}
		if filled, err = src.fill(ctx, stage); err != nil {
			return err
		}
		res.Pull = filled.Pull
		if err := before("init"); err != nil {
			return err
		}
		if filled.Prepared {
			res.Init = filled.Root.Init
		} else {
			if res.Init, err = initinstall.Install(stage, o.Init); err != nil {
				return err
			}
			if _, err := protect.Protect(stage); err != nil {
				return err
			}
			if err := os.Chmod(stage, 0o755); err != nil {
				return err
			}
		}
		if err := before("swap:rootfs"); err != nil {
			return err
		}
		if _, err := os.Lstat(p.Rootfs); err == nil {
			if err := j.Exchange(stage, p.Rootfs); err != nil {
				return err
			}
			// The stage now holds the old rootfs: deleted after the
			// commit (its staging name lets host clean sweep it after a
			// crash).
			replaced, res.Replaced = stage, true
		} else {
			if err := j.Log(journal.Record{Op: journal.OpRename, From: stage, Path: p.Rootfs}); err != nil {
				return err
			}
			if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, p.Rootfs, unix.RENAME_NOREPLACE); err != nil {
				return fmt.Errorf("moving %s to %s: %w", stage, p.Rootfs, err)
			}
		}
		res.Links, err = makeLinksList(j, p, func(what string) error { return before("swap:" + what) })
		return err
	})
	if err != nil {
		return nil, err
	}
	if replaced != "" {
		if err := btrfs.RemoveAll(replaced); err != nil {
			o.Log.Warn("deleting the replaced rootfs", "path", replaced, "err", err)
		}
	}
	return res, nil
}
