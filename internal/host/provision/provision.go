// Package provision creates a machine from an image: it composes the pull
// engine, init detection, the file templates and the man8s-init installer,
// and takes everything back when any step fails or is cancelled.
package provision

import (
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

	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/protect"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/imageroot"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

// Options say what machine Create makes and from what.
type Options struct {
	Name string
	// Dirs are the configured host directories.
	Dirs config.Paths
	// Bridge is the host bridge the machine is attached to.
	Bridge string
	// Uplink is the host interface of the macvlan template.
	Uplink string
	// Template is the settings template (machinefiles.ParseTemplate).
	Template string
	// Image is the resolved image (config fetched, layers not yet); Ref is
	// the reference as the user gave it.
	Image *registry.Image
	Ref   string
	// Subnet is the host's Yggdrasil subnet.
	Subnet netip.Prefix
	// Mode is the requested init mode (imageinit.Auto to detect).
	Mode imageinit.Mode
	// Volumes say where each volume lives; Kind must be set, Host only for
	// custom volumes.
	Volumes []machine.Volume
	// Cache is the content cache; Pull tunes the download.
	Cache *cache.Cache
	Pull  pull.Options
	// Env are variables for man8env.env given at pull, in order (later
	// wins), over the image's own; see machinefiles.Params.Env.
	Env []machinefiles.EnvVar
	// NoIPv6Uplink, if set, says why the host has no IPv6 to the internet:
	// the machine gets MAN8S_IPV6=optional (machinefiles.Params).
	NoIPv6Uplink string
	// Ports are published on the host (Port= in the settings); the
	// caller has checked that no other machine publishes them.
	Ports []nspawnport.Port
	// Init is what gets installed at /man8s-init.
	Init initinstall.Sources
	// Probe, if set, probes how the image's entrypoint behaves as PID 1
	// (probe.Run; tests give a fake) for the init mode and the stop
	// warning. The input is ProbeInput's, with the scratch dir, the run's
	// journal and BeforeStep. Nil: the entrypoint's name alone decides.
	Probe func(context.Context, probe.Input) (*probe.Findings, error)
	// Version is mbctl's version; Now the creation time (default now).
	Version string
	Now     time.Time
	Log     *slog.Logger

	// Entrypoint and Cmd, when not nil, replace the image's (as docker
	// run's --entrypoint and arguments do; a new Entrypoint without a Cmd
	// drops the image's Cmd): the machine's own command, kept as the
	// user's edit across upgrades.
	Entrypoint, Cmd []string

	// Strict makes the machine run on the image's root in the image root
	// store (config paths.images), shared read-only with every strict
	// machine of the image: nothing is copied; state lives in volumes.
	Strict bool

	// Adopt lets the machine's storage dir and its custom volume dirs
	// exist (kept by 'machines remove --keep-data', or copied from
	// another host): a volume whose dir exists is used as it is.
	Adopt bool

	// BeforeStep, if set, runs before each step (see Steps) and between
	// the renames of the install ("install:" + the final path's kind); an
	// error aborts there. Tests and mbctl's fault hook stop a run with it.
	BeforeStep func(step string) error
}

// Created describes a new machine.
type Created struct {
	Paths      machine.Paths
	YggAddress netip.Addr
	Detection  imageinit.Detection
	// Probe is what the probe found (nil: none ran, or it failed with
	// ProbeErr); StopWarning says why a stop will not end the app, or "".
	Probe    *probe.Findings
	ProbeErr error
	// ProbeCached tells that Probe was kept from an earlier pull of the
	// image with the same variables, not run again.
	ProbeCached bool
	StopWarning string
	Mode        imageinit.Mode
	ModeReason  string
	Volumes     []machine.Volume
	Pull        *pull.Result
	Init        initinstall.Result
	Protect     protect.Result
	// Root is the image root the rootfs links to (Strict) or is a btrfs
	// snapshot of; nil when the image was unpacked into the rootfs.
	Root   *imageroot.Root
	Strict bool
	// Adopted are the kept dirs (Options.Adopt) the machine uses as they
	// are, instead of a copy of the image's content.
	Adopted []string
}

// creation is the state of one Create: what it was asked, what it made so
// far (and will take back on failure), and where it builds.
type creation struct {
	o   Options
	p   machine.Paths
	res *Created
	// j records everything the run makes before it makes it: Create rolls
	// it back on failure, and journal.Recover after a crash.
	j *journal.Journal

	// rootfs, confDir and storDir are the staging dirs standing in for the
	// rootfs, the config dir and the storage dir.
	rootfs, confDir, storDir string
	// staged maps each final dir (config, storage, custom volumes) to the
	// staging dir standing in for it.
	staged map[string]string
	// adopted are the volume dirs that exist and are used as they are
	// (Options.Adopt).
	adopted map[string]bool
	// filled says how the rootfs was made.
	filled rootfsFilled
}

// step is one named step of a run over state T (Create's *creation,
// Upgrade's *upgrade); tests and the fault hook stop a run before each.
type step[T any] struct {
	name string
	run  func(T, context.Context) error
}

// stepNames lists the names of steps, in order.
func stepNames[T any](steps []step[T]) []string {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.name
	}
	return names
}

// Steps are the names of Create's steps, in order.
func Steps() []string { return stepNames(createSteps()) }

// createSteps are Create's steps in order; tests interrupt before each.
func createSteps() []step[*creation] {
	return []step[*creation]{
		{"prepare", (*creation).prepare},
		{"unpack", (*creation).unpack},
		{"detect", (*creation).detect},
		{"volumes", (*creation).copyVolumes},
		{"files", (*creation).writeFiles},
		{"init", (*creation).installInit},
		{"protect", (*creation).protect},
		{"install", (*creation).install},
	}
}

// Create makes machine o.Name: it unpacks the image into a staging dir,
// detects the image's init, copies the volumes' image content into their
// host dirs, writes container.nspawn and man8env.env, installs man8s-init,
// protects /run and /tmp, then moves everything into place and creates the
// settings and machinectl links.
//
// On any error or cancellation everything this call created is removed,
// and nothing else: the host is as it was before, but for the shared parent
// dirs (machines, configs, ...), which stay once made.
func Create(ctx context.Context, o Options) (res *Created, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := machine.ValidateName(o.Name); err != nil {
		return nil, err
	}
	c := &creation{o: o, p: machine.PathsFor(o.Dirs, o.Name)}
	c.res = &Created{Paths: c.p}
	// A host_network machine has no address of its own (and the pull
	// needs no Yggdrasil subnet for it).
	if tmpl, _ := man8env.ParseTemplate(o.Template); man8env.HasOwnNetwork(tmpl) || o.Subnet.IsValid() {
		if c.res.YggAddress, err = yggaddr.Address(o.Subnet, o.Name); err != nil {
			return nil, err
		}
	}
	if c.res.Volumes, err = placeVolumes(o.Volumes, c.p); err != nil {
		return nil, err
	}
	for _, v := range o.Env {
		if err := man8env.CheckUserKey(v.Key); err != nil {
			return nil, fmt.Errorf("environment given at pull: %w", err)
		}
	}
	if o.Dirs.Scratch == "" {
		return nil, errors.New("creating a machine: no journal dir (paths.scratch) configured")
	}
	defer func() { c.filled.done() }()
	err = journaled(o.Dirs, "machines pull "+o.Name, true, o.Log, func(j *journal.Journal) error {
		c.j = j
		for _, st := range createSteps() {
			if err := c.before(ctx, st.name); err != nil {
				return err
			}
			if err := st.run(c, ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c.res, nil
}

// before runs ahead of step: it stops on cancellation and at the test
// hook.
func (c *creation) before(ctx context.Context, step string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.o.BeforeStep != nil {
		return c.o.BeforeStep(step)
	}
	return nil
}

// JournalDir is where runs that create machines keep their journals.
func JournalDir(dirs config.Paths) string { return filepath.Join(dirs.Scratch, "journals") }

// prepare checks that the name and the custom volume dirs are free, makes
// the shared parent dirs, and a staging dir beside each final dir.
func (c *creation) prepare(context.Context) error {
	if err := c.checkFree(); err != nil {
		return err
	}
	c.adopted = map[string]bool{}
	for _, v := range c.res.Volumes {
		if c.o.Adopt && v.Kind != machine.VolumeSkip {
			if fi, err := os.Stat(v.Host); err == nil && fi.IsDir() {
				c.adopted[v.Host] = true
				c.res.Adopted = append(c.res.Adopted, v.Host)
				continue
			}
		}
		if v.Kind == machine.VolumeCustom {
			if err := machine.CheckCustomDir(v.Host, c.p); err != nil {
				return fmt.Errorf("volume %s: %w", v.Path, err)
			}
		}
	}
	// The shared parents are made once with their final modes and never
	// removed: another machine may live in them by the time this run ends.
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{
		// The machines dir holds setuid files and device nodes of images:
		// only root may enter it. The config dirs hold secrets.
		{c.o.Dirs.Machines, 0o700}, {c.o.Dirs.Configs, 0o700}, {c.o.Dirs.Storage, 0o700},
		{c.o.Dirs.Nspawn, 0o755}, {c.o.Dirs.Machinectl, 0o700},
	} {
		if _, err := ensureDir(d.path, d.mode, nil); err != nil {
			return err
		}
	}
	var err error
	if c.rootfs, err = c.stage(c.p.Rootfs); err != nil {
		return err
	}
	if c.confDir, err = c.stage(c.p.ConfigDir); err != nil {
		return err
	}
	if c.storDir, err = c.stage(c.p.StorageDir); err != nil {
		return err
	}
	c.staged = map[string]string{c.p.ConfigDir: c.confDir, c.p.StorageDir: c.storDir}
	for _, v := range c.res.Volumes {
		if v.Kind == machine.VolumeCustom && !c.adopted[v.Host] {
			if c.staged[v.Host], err = c.stage(v.Host); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkFree checks that the machine's paths are free. With Adopt its
// storage dir may exist; a kept config dir is adopted through Upgrade
// (UpgradeOptions.Adopt), which merges the new image into its files.
func (c *creation) checkFree() error {
	if !c.o.Adopt {
		return c.p.CheckFree()
	}
	found, err := c.p.Existing()
	if err != nil {
		return err
	}
	var taken []machine.Entry
	for _, e := range found {
		if e.Path != c.p.StorageDir {
			taken = append(taken, e)
		}
	}
	if len(taken) > 0 {
		return &machine.ExistsError{Name: c.p.Name, Found: taken}
	}
	return nil
}

// StagingPrefix starts the name of a staging dir beside final, so that a
// sweep recognises it (see Clean).
func StagingPrefix(final string) string { return "." + filepath.Base(final) + stagingMark }

// stagingMark is in the name of every staging dir.
const stagingMark = ".mbctl-staging-"

// stage makes a staging dir beside final, journaled.
func (c *creation) stage(final string) (string, error) {
	parent := filepath.Dir(final)
	// A custom volume's parents that this run makes go again if they hold
	// nothing else by then.
	_, err := ensureDir(parent, 0o755, func(p string) error {
		return c.j.Log(journal.Record{Op: journal.OpParent, Path: p})
	})
	if err != nil {
		return "", err
	}
	dir, err := c.j.MkdirUnique(parent, StagingPrefix(final))
	if err != nil {
		return "", fmt.Errorf("creating a staging dir next to %s: %w", final, err)
	}
	return dir, nil
}

// stagedPath maps a final host path to where it is being built.
func (c *creation) stagedPath(final string) string {
	for f, s := range c.staged {
		if fsutil.Within(final, f) {
			return s + strings.TrimPrefix(final, f)
		}
	}
	return final
}

// unpack makes the staging rootfs from the image: its layers applied, or
// a link to (strict) or a btrfs snapshot of its image root.
func (c *creation) unpack(ctx context.Context) (err error) {
	src := rootfsSource{
		Dirs: c.o.Dirs, Image: c.o.Image, Ref: c.o.Ref, Strict: c.o.Strict,
		Cache: c.o.Cache, Pull: c.o.Pull, Init: c.o.Init, Now: c.o.Now, Log: c.o.Log,
	}
	if c.filled, err = src.fill(ctx, c.rootfs); err != nil {
		return err
	}
	c.res.Pull, c.res.Root, c.res.Strict = c.filled.Pull, c.filled.Root, c.o.Strict
	if c.filled.Prepared {
		c.res.Init, c.res.Protect = c.filled.Root.Init, c.filled.Root.Protect
	}
	if c.o.Strict {
		var paths []string
		for _, v := range c.res.Volumes {
			if v.Kind != machine.VolumeSkip {
				paths = append(paths, v.Path)
			}
		}
		return checkStrictVolumes(c.rootfs, paths)
	}
	return nil
}

// detect recognises the image's own init, probes its entrypoint (with
// Options.Probe) and chooses the init mode. A probe that fails leaves the
// choice to the name; only an interruption stops the run.
func (c *creation) detect(ctx context.Context) (err error) {
	cfg := c.appConfig()
	argv := slices.Concat(cfg.Entrypoint, cfg.Cmd)
	if c.res.Detection, err = imageinit.Detect(c.rootfs, argv); err != nil {
		return err
	}
	if c.o.Probe != nil {
		key := probeKey(c.o.Image.Digest.String(), c.o.Env)
		if kept := cachedProbe(c.o.Cache.Dir(), key); kept != nil {
			c.res.Probe, c.res.ProbeCached = kept, true
		} else if c.res.Probe, c.res.ProbeErr = c.probe(ctx); c.res.ProbeErr == nil {
			if err := keepProbe(c.o.Cache.Dir(), key, c.res.Probe); err != nil {
				c.o.Log.Debug("keeping the init probe's findings", "err", err)
			}
		}
		if c.res.ProbeErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.res.Probe = nil
			c.o.Log.Debug("init probe failed; the entrypoint's name decides", "machine", c.o.Name, "err", c.res.ProbeErr)
		}
	}
	c.res.Mode, c.res.ModeReason = imageinit.Choose(c.o.Mode, c.res.Detection, c.res.Probe)
	c.res.StopWarning = imageinit.StopWarning(c.res.Mode, c.res.Detection, c.res.Probe)
	return nil
}

// probe runs Options.Probe on the staging rootfs, as the machine would run
// it in exec-pid1 mode.
func (c *creation) probe(ctx context.Context) (*probe.Findings, error) {
	in, err := ProbeInput(c.rootfs, machinefiles.Params{
		Name: c.o.Name, Template: c.o.Template, YggAddress: c.res.YggAddress,
		ImageRef: c.o.Ref, ImageDigest: c.o.Image.Digest.String(), Image: c.appConfig(),
		Env: c.o.Env, Version: c.o.Version, Created: c.o.Now,
	})
	if err != nil {
		return nil, err
	}
	in.Scratch, in.Journal, in.BeforeStep = c.o.Dirs.Scratch, c.j, c.o.BeforeStep
	return c.o.Probe(ctx, in)
}

// appConfig is the image's config with the machine's own command
// (Options.Entrypoint, Options.Cmd).
func (c *creation) appConfig() v1.Config {
	return WithCommand(c.o.Image.Config.Config, c.o.Entrypoint, c.o.Cmd)
}

// WithCommand returns cfg with entrypoint and cmd, where not nil, in place
// of its own; a new entrypoint without a cmd drops cfg's cmd, as docker
// run --entrypoint does.
func WithCommand(cfg v1.Config, entrypoint, cmd []string) v1.Config {
	if entrypoint != nil {
		cfg.Entrypoint, cfg.Cmd = slices.Clone(entrypoint), nil
	}
	if cmd != nil {
		cfg.Cmd = slices.Clone(cmd)
	}
	return cfg
}

// copyVolumes copies the image's content at each volume into its host dir.
func (c *creation) copyVolumes(context.Context) error {
	for _, v := range c.res.Volumes {
		if v.Kind == machine.VolumeSkip || c.adopted[v.Host] {
			continue
		}
		if err := copyVolume(c.rootfs, v.Path, c.stagedPath(v.Host)); err != nil {
			return fmt.Errorf("volume %s: %w", v.Path, err)
		}
	}
	return nil
}

// writeFiles writes container.nspawn and man8env.env into the staging
// config dir.
func (c *creation) writeFiles(context.Context) error {
	o, res, p := c.o, c.res, c.p
	params := machinefiles.Params{
		Name: o.Name, Template: o.Template, Bridge: o.Bridge, Uplink: o.Uplink, YggAddress: res.YggAddress,
		ImageRef: o.Ref, ImageDigest: o.Image.Digest.String(), Image: c.appConfig(),
		Mode: res.Mode, KillSignal: imageinit.KillSignal(res.Mode, res.Detection),
		EnvFile: p.Env, Env: o.Env, NoIPv6Uplink: o.NoIPv6Uplink, Ports: o.Ports, Version: o.Version, Created: o.Now,
	}
	if o.Strict {
		params.Strict, params.ResolvFile = true, filepath.Join(p.ConfigDir, machine.ResolvFile)
		// Written by man8s-init from the lease; empty until then.
		if err := os.WriteFile(c.stagedPath(params.ResolvFile), nil, 0o644); err != nil {
			return err
		}
	}
	for _, v := range res.Volumes {
		if v.Kind != machine.VolumeSkip {
			params.Binds = append(params.Binds, machinefiles.Bind{Host: v.Host, Container: v.Path})
		}
	}
	settings, err := machinefiles.Settings(params)
	if err != nil {
		return err
	}
	env, err := machinefiles.Env(params)
	if err != nil {
		return err
	}
	if err := unitfile.WriteFileAtomic(c.stagedPath(p.Settings), settings, 0o644); err != nil {
		return err
	}
	// The environment may hold secrets: root only.
	if err := envfile.WriteFileAtomic(c.stagedPath(p.Env), env, 0o600); err != nil {
		return err
	}
	return c.writeBase(params)
}

// installInit installs man8s-init (and busybox) into the staging rootfs,
// and an empty /usr if the image has none (systemd-nspawn refuses a tree
// without it). The journal's record of the staging rootfs covers all of
// it: a rollback removes the whole tree.
func (c *creation) installInit(context.Context) (err error) {
	if c.filled.Prepared {
		return nil // the image root's
	}
	if c.res.Init, err = initinstall.Install(c.rootfs, c.o.Init); err != nil {
		return err
	}
	if c.res.Init.MadeUsr {
		c.o.Log.Debug("the image has no /usr: made an empty one, without which systemd-nspawn refuses the tree", "machine", c.o.Name)
	}
	return nil
}

// protect moves /run and /tmp content aside for nspawn's tmpfs mounts.
func (c *creation) protect(context.Context) (err error) {
	if c.filled.Prepared {
		return nil // the image root's
	}
	c.res.Protect, err = protect.Protect(c.rootfs)
	return err
}

// install renames every staging dir into place, then makes the links. The
// rootfs goes last among the dirs: until then no machine of that name is
// visible to nspawn.
func (c *creation) install(ctx context.Context) error {
	if len(c.o.Ports) > 0 {
		// The caller checked the ports before the download; a publish
		// since then may have taken one. Hold the lock until the settings
		// are in place, where the next publish sees them.
		unlock, err := machine.LockPorts(c.o.Dirs)
		if err != nil {
			return err
		}
		defer unlock()
		if err := machine.CheckPortsFree(c.o.Dirs, c.o.Name, c.o.Ports); err != nil {
			return fmt.Errorf("publishing ports of machine %s: %w", c.o.Name, err)
		}
	}
	if !isLink(c.rootfs) { // a strict rootfs links to a read-only root
		if err := os.Chmod(c.rootfs, 0o755); err != nil {
			return err
		}
	}
	type move struct{ what, from, to string }
	moves := []move{{"config", c.confDir, c.p.ConfigDir}}
	adoptStorage := false
	if _, err := os.Lstat(c.p.StorageDir); err == nil && c.o.Adopt {
		adoptStorage = true
		// The kept storage dir stays; the new data volumes move into it.
		for _, v := range c.res.Volumes {
			if v.Kind == machine.VolumeData && !c.adopted[v.Host] {
				if _, err := ensureDir(filepath.Dir(v.Host), 0o755, func(p string) error {
					return c.j.Log(journal.Record{Op: journal.OpParent, Path: p})
				}); err != nil {
					return err
				}
				moves = append(moves, move{"storage", c.stagedPath(v.Host), v.Host})
			}
		}
	} else {
		moves = append(moves, move{"storage", c.storDir, c.p.StorageDir})
	}
	for _, v := range c.res.Volumes {
		if v.Kind == machine.VolumeCustom && !c.adopted[v.Host] {
			moves = append(moves, move{"volume", c.staged[v.Host], v.Host})
		}
	}
	moves = append(moves, move{"rootfs", c.rootfs, c.p.Rootfs})
	for _, m := range moves {
		if err := c.before(ctx, "install:"+m.what); err != nil {
			return err
		}
		if err := c.j.Log(journal.Record{Op: journal.OpRename, From: m.from, Path: m.to}); err != nil {
			return err
		}
		if err := unix.Renameat2(unix.AT_FDCWD, m.from, unix.AT_FDCWD, m.to, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("moving %s to %s: %w", m.from, m.to, err)
		}
	}
	if adoptStorage {
		// Emptied of its volumes: only their parent dirs are left.
		if err := os.RemoveAll(c.storDir); err != nil {
			return err
		}
	}
	for _, l := range []struct{ what, target, link string }{
		{"settings link", c.p.Settings, c.p.SettingsLink}, {"machinectl link", c.p.Rootfs, c.p.ImageLink},
	} {
		if err := c.before(ctx, "install:"+l.what); err != nil {
			return err
		}
		if err := c.j.Log(journal.Record{Op: journal.OpLink, Path: l.link, Target: l.target}); err != nil {
			return err
		}
		if err := os.Symlink(l.target, l.link); err != nil {
			return fmt.Errorf("creating link %s: %w", l.link, err)
		}
	}
	return nil
}

// placeVolumes checks the volumes and fills in their host dirs.
func placeVolumes(vols []machine.Volume, p machine.Paths) ([]machine.Volume, error) {
	out := make([]machine.Volume, 0, len(vols))
	seen := map[string]bool{}
	for _, v := range vols {
		clean, err := machine.CleanVolumePath(v.Path)
		if err != nil {
			return nil, err
		}
		if seen[clean] {
			return nil, fmt.Errorf("volume %s given twice", clean)
		}
		seen[clean] = true
		v.Path = clean
		switch v.Kind {
		case machine.VolumeConfig, machine.VolumeData, machine.VolumeSkip:
			v = v.Place(p)
		case machine.VolumeCustom:
			if v.Host == "" {
				return nil, fmt.Errorf("volume %s: no host dir given", clean)
			}
			v.Host = filepath.Clean(v.Host)
		default:
			return nil, fmt.Errorf("volume %s: unknown kind %q", clean, v.Kind)
		}
		out = append(out, v)
	}
	for i, a := range out {
		for _, b := range out[i+1:] {
			if a.Host != "" && b.Host != "" && (fsutil.Within(a.Host, b.Host) || fsutil.Within(b.Host, a.Host)) {
				return nil, fmt.Errorf("volumes %s and %s: host dirs %s and %s overlap", a.Path, b.Path, a.Host, b.Host)
			}
		}
	}
	return out, nil
}

// copyVolume creates the host dir dst with the content and attributes of
// the image's dir at volPath inside rootfs. When the image has nothing
// there, dst is an empty 0755 dir and the mount point is created in the
// rootfs.
func copyVolume(rootfs, volPath, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	src, err := resolveInRoot(rootfs, volPath, true)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the image has a %s at %s, not a directory", fileType(fi), volPath)
	}
	// A custom volume's dst is its (empty) staging dir, already there.
	if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, err := fsutil.CopyTree(src, dst); err != nil {
		return fmt.Errorf("copying the image's %s to %s: %w", volPath, dst, err)
	}
	return fsutil.CopyMeta(src, dst)
}

func fileType(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	default:
		return "special file"
	}
}

// resolveInRoot returns the host path of p inside root, resolving
// symlinks as if root were "/" (openat2 RESOLVE_IN_ROOT), so a hostile
// image cannot point a volume at a host dir. With create, missing dirs
// are made (0755). root must be private to the caller: the result is a
// path, valid as long as nobody else changes the tree.
func resolveInRoot(root, p string, create bool) (string, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	rootPath, err := fsutil.FdPath(rootfd)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", root, err)
	}
	const flags = unix.O_PATH | unix.O_DIRECTORY
	rel := strings.TrimPrefix(p, "/")
	in, err := fsutil.RealPathInRoot(rootfd, rootPath, rel, flags)
	if errors.Is(err, unix.ENOENT) && create {
		if err = mkdirInRoot(rootfd, rel, flags); err == nil {
			in, err = fsutil.RealPathInRoot(rootfd, rootPath, rel, flags)
		}
	}
	if err != nil {
		return "", fmt.Errorf("resolving %s in %s: %w", p, root, err)
	}
	return filepath.Join(root, in), nil
}

// mkdirInRoot creates the missing dirs of rel (0755) one by one, each
// resolved in root. A dangling symlink on the way is an error: where it
// points is not for mbctl to create.
func mkdirInRoot(rootfd int, rel string, flags int) error {
	cur := ""
	for _, part := range strings.Split(rel, "/") {
		next := part
		if cur != "" {
			next = cur + "/" + part
		}
		if fd, err := fsutil.OpenInRoot(rootfd, next, flags); err == nil {
			unix.Close(fd)
			cur = next
			continue
		}
		pfd, err := fsutil.OpenInRoot(rootfd, orDot(cur), flags)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(pfd, part, 0o755)
		unix.Close(pfd)
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("/%s is a dangling symlink or not a directory", next)
		}
		if err != nil {
			return fmt.Errorf("creating /%s: %w", next, err)
		}
		cur = next
	}
	return nil
}

func orDot(s string) string {
	if s == "" {
		return "."
	}
	return s
}

// ensureDir creates path and its missing parents with mode, and returns
// the dirs it created, topmost first. before, if set, runs ahead of each
// Mkdir (to journal it). A dir that another process creates at the same
// moment is fine; only dirs this call created get their mode set (the
// umask applied to Mkdir).
func ensureDir(path string, mode fs.FileMode, before func(string) error) ([]string, error) {
	var missing []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("%s is not a directory", p)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if before != nil {
			if err := before(missing[i]); err != nil {
				return made, err
			}
		}
		err := os.Mkdir(missing[i], mode)
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := os.Stat(missing[i]); serr == nil && fi.IsDir() {
				continue // made by someone else meanwhile
			}
		}
		if err != nil {
			return made, fmt.Errorf("creating %s: %w", missing[i], err)
		}
		if err := os.Chmod(missing[i], mode); err != nil {
			return made, err
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// CleanReport says what Clean found and took back.
type CleanReport struct {
	// Dead are the runs that died (killed, power loss) with what they had
	// made, now rolled back.
	Dead []journal.Dead
	// Orphans are staging dirs that no run's journal names (left by an
	// mbctl without journals, or a journal that was deleted), now removed.
	Orphans []string
	// Bytes is the space the orphans took.
	Bytes int64
}

// Clean takes back what runs that died left behind: it rolls back the
// journals of dead runs (machines pull, oci download) and removes staging
// dirs in the machines, configs and storage dirs that no live run names.
// Runs that are alive are never touched. With dryRun it only reports.
func Clean(dirs config.Paths, dryRun bool) (CleanReport, error) {
	var rep CleanReport
	// List first, read the live journals after: a live run journals a
	// staging dir before it makes it, so every dir listed here that
	// belongs to a live run is in a journal read later.
	var staged []string
	for _, d := range []string{dirs.Machines, dirs.Configs, dirs.Storage, dirs.Images} {
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("listing %s: %w", d, err)
		}
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, stagingMark) {
				staged = append(staged, filepath.Join(d, n))
			}
		}
	}
	jdir := JournalDir(dirs)
	dead, err := journal.Recover(jdir, dryRun)
	rep.Dead = dead
	if err != nil {
		return rep, err
	}
	live, err := journal.Live(jdir)
	if err != nil {
		return rep, err
	}
	inDead := map[string]bool{}
	for _, d := range dead {
		for _, r := range d.Records {
			inDead[r.Path], inDead[r.From] = true, true
		}
	}
	var errs []error
	for _, p := range staged {
		if live[p] || (dryRun && inDead[p]) {
			continue
		}
		if _, err := os.Lstat(p); err != nil {
			continue // a dead run's, rolled back above
		}
		rep.Orphans = append(rep.Orphans, p)
		rep.Bytes += fsutil.DiskUsage(p)
		if !dryRun {
			if err := btrfs.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
			}
		}
	}
	for _, d := range dead {
		if d.Err != nil {
			errs = append(errs, fmt.Errorf("rolling back %s (%s): %w", d.Journal, d.What, d.Err))
		}
	}
	return rep, errors.Join(errs...)
}
