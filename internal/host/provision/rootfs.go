package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/imageroot"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

// rootfsSource says what a run (pull, upgrade, rebuild) puts into a
// machine's staging rootfs, and how.
type rootfsSource struct {
	Dirs  config.Paths
	Image *registry.Image
	Ref   string
	// Strict links the rootfs to the image's shared root.
	Strict bool
	Cache  *cache.Cache
	Pull   pull.Options
	Init   initinstall.Sources
	Now    time.Time
	Log    *slog.Logger
}

// rootfsFilled says what filling a staging rootfs did.
type rootfsFilled struct {
	// Pull is the unpack's result; nil when an image root was there.
	Pull *pull.Result
	// Root is the image root the rootfs links to (strict) or is a
	// snapshot of (btrfs); nil when the image was unpacked into it.
	Root *imageroot.Root
	// Prepared tells that man8s-init is installed and /run, /tmp are
	// protected (the root's doing): the run's own steps for them are done.
	Prepared bool
	// release lets go of the store's lock, held from the root's lookup
	// until the run's end, when the machine's files name the root.
	release func()
}

// done ends the run's use of the store.
func (f rootfsFilled) done() {
	if f.release != nil {
		f.release()
	}
}

// fill makes stage, an empty staging dir the run's journal holds, the
// machine's rootfs (the caller calls done on the result when its run
// ends):
//   - strict: a link to the image's root in the store (built once);
//   - on btrfs: a writable snapshot of that root (no unpack, no space);
//   - else: the image unpacked into it.
func (s rootfsSource) fill(ctx context.Context, stage string) (rootfsFilled, error) {
	var out rootfsFilled
	useStore := s.Strict
	if !useStore {
		onBtrfs, err := btrfs.Is(stage)
		if err != nil {
			return out, err
		}
		useStore = onBtrfs
	}
	var err error
	if !useStore {
		out.Pull, err = pull.Unpack(ctx, s.Cache, s.Image, stage, s.Pull)
		return out, err
	}
	store := imageroot.Store{Dir: s.Dirs.Images}
	if out.release, err = store.Use(); err != nil {
		return out, err
	}
	out.Root, out.Pull, err = store.Ensure(ctx, imageroot.Options{
		Image: s.Image, Ref: s.Ref, Cache: s.Cache, Pull: s.Pull, Init: s.Init,
		JournalDir: JournalDir(s.Dirs), Now: s.Now,
	})
	if err != nil {
		return out, err
	}
	// The staging dir's journal record covers the link or snapshot that
	// takes its name.
	if err := os.Remove(stage); err != nil {
		return out, err
	}
	if s.Strict {
		out.Prepared = true
		if err := os.Symlink(out.Root.Path, stage); err != nil {
			return out, fmt.Errorf("linking %s to the image root %s: %w", stage, out.Root.Path, err)
		}
		return out, nil
	}
	ok, err := imageroot.Snapshot(out.Root, stage)
	if err != nil {
		return out, err
	}
	if ok {
		out.Prepared = true
		return out, nil
	}
	s.Log.Warn("the image roots are not on the machines' btrfs: each machine is unpacked anew; set paths.images inside paths.machines",
		"images", s.Dirs.Images, "machines", s.Dirs.Machines)
	if err := os.Mkdir(stage, 0o700); err != nil {
		return out, err
	}
	out.Root = nil
	out.Pull, err = pull.Unpack(ctx, s.Cache, s.Image, stage, s.Pull)
	return out, err
}

// checkStrictVolumes checks that every volume path exists in a strict
// machine's root: nspawn cannot make a mount point in a read-only tree.
// The image's own volumes always do (the store makes them).
func checkStrictVolumes(root string, paths []string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	var errs []error
	for _, p := range paths {
		rel := strings.TrimPrefix(path.Clean("/"+p), "/")
		if _, err := r.Stat(rel); errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("volume %s is not in the image: a strict machine's root is the image's, read-only, so a volume must be one of the image's VOLUMEs or an existing dir of it (or pull without --strict)", p))
		} else if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// isLink reports whether p is a symlink (a strict machine's rootfs).
func isLink(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}

// storeDigest is the digest of the image root a strict rootfs links to,
// or "" when p is no such link.
func storeDigest(dirs config.Paths, p string) string {
	t, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return imageroot.Store{Dir: dirs.Images}.DigestOf(t)
}

// ImageRootUsers maps the digest of each image that a machine under dirs
// runs, or can roll back to, to those machines' names: the image roots
// that must stay.
func ImageRootUsers(dirs config.Paths) (map[string][]string, error) {
	names, err := machine.Names(dirs)
	if err != nil {
		return nil, err
	}
	used := map[string][]string{}
	add := func(digest, name string) {
		if digest != "" && !slices.Contains(used[digest], name) {
			used[digest] = append(used[digest], name)
		}
	}
	for _, n := range names {
		p := machine.PathsFor(dirs, n)
		for _, env := range []string{p.Env, filepath.Join(StateDir(p), previousDir, machine.EnvFile)} {
			if f, err := envfile.ReadFile(env); err == nil {
				add(valueOf(f, man8env.KeyDigest), n)
			}
		}
		// A strict machine whose files say otherwise still runs on its
		// link's root.
		add(storeDigest(dirs, p.Rootfs), n)
		add(storeDigest(dirs, PreviousRootfs(p)), n)
		snaps, _ := filepath.Glob(filepath.Join(p.Snapshots, "*", snapRootfs))
		for _, s := range snaps {
			add(storeDigest(dirs, s), n)
		}
	}
	return used, nil
}

// FreeImageRoots deletes the image roots of the digests in only (nil:
// all) that no machine uses (ImageRootUsers), and returns them;
// imageroot.ErrBusy while machines are being made.
func FreeImageRoots(dirs config.Paths, only []string) ([]*imageroot.Root, error) {
	used, err := ImageRootUsers(dirs)
	if err != nil {
		return nil, err
	}
	return imageroot.Store{Dir: dirs.Images}.Free(used, only)
}

// ImageRootsOf returns the digests of the images machine name runs or can
// roll back to.
func ImageRootsOf(dirs config.Paths, name string) []string {
	used, err := ImageRootUsers(dirs)
	if err != nil {
		return nil
	}
	var out []string
	for d, names := range used {
		if slices.Contains(names, name) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}
