// Package imageroot is the store of image roots: each image's tree,
// unpacked once per manifest digest, with man8s-init installed, /run and
// /tmp protected and the mount points a machine needs made, then frozen.
//
// Strict machines run on a root directly: their rootfs is a link to it,
// which systemd-nspawn mounts read-only (ReadOnly=yes), so any number of
// machines share one tree. On btrfs a root is a read-only subvolume, and
// every other machine's rootfs is a writable snapshot of it: a second
// machine from a cached image costs neither an unpack nor disk.
//
// A root is built in a staging dir beside its final place, recorded in the
// caller's journal, and renamed into place when complete: a crash or an
// error leaves no half root under a final name. Which machines use a root
// is the caller's to say (their files record the digest); Remove deletes
// one.
package imageroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/protect"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

// Store is the image root store in Dir (config paths.images).
type Store struct {
	Dir string
}

// Root is one image root, as its record says.
type Root struct {
	// Digest is the image's manifest digest; Path the tree.
	Digest string `json:"digest"`
	Path   string `json:"path"`
	// Ref is the reference it was first built for.
	Ref     string    `json:"ref"`
	Created time.Time `json:"created"`
	// Btrfs tells that the root is a read-only btrfs subvolume, which
	// machines' rootfs are snapshots of.
	Btrfs bool `json:"btrfs"`
	// Size is the bytes of its files: List counts them the first time
	// (a build does not, to stay fast) and records them.
	Size int64 `json:"size"`
	// Init and Protect are what preparing the tree did.
	Init    initinstall.Result `json:"init"`
	Protect protect.Result     `json:"protect"`
	// Chain is the layer chain (ChainID) of all the image's layers but
	// the last, kept as a read-only subvolume in the store's chains dir
	// (btrfs): an image that shares them starts from a snapshot of it.
	Chain string `json:"chain,omitempty"`
}

// stagingMark is in the name of every staging root (host clean sweeps
// them: provision.Clean).
const stagingMark = ".mbctl-staging-"

// recordSuffix names a root's record, beside it.
const recordSuffix = ".json"

// name is the file name of digest's root: "sha256-<hex>".
func name(digest string) (string, error) {
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok || algo == "" || hex == "" || strings.ContainsAny(digest, "/\x00") || strings.Contains(hex, ":") {
		return "", fmt.Errorf("image digest %q: want ALGO:HEX", digest)
	}
	return algo + "-" + hex, nil
}

// Path is where the root of digest lives (or would).
func (s Store) Path(digest string) (string, error) {
	n, err := name(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, n), nil
}

// DigestOf is the digest of the root at path (Path's inverse), or "" when
// path is no root's place in the store.
func (s Store) DigestOf(path string) string {
	if filepath.Dir(path) != filepath.Clean(s.Dir) {
		return ""
	}
	algo, hex, ok := strings.Cut(filepath.Base(path), "-")
	if !ok || algo == "" || hex == "" || strings.HasPrefix(algo, ".") {
		return ""
	}
	return algo + ":" + hex
}

// Lookup returns the root of digest, or nil if the store has none.
func (s Store) Lookup(digest string) (*Root, error) {
	p, err := s.Path(digest)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	r := &Root{Digest: digest, Path: p}
	b, err := os.ReadFile(p + recordSuffix)
	if err == nil {
		err = json.Unmarshal(b, r)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the record of image root %s: %w", p, err)
	}
	r.Digest, r.Path = digest, p
	if r.Btrfs, err = btrfs.IsSubvolume(p); err != nil {
		return nil, err
	}
	return r, nil
}

// List returns every root in the store, by digest.
func (s Store) List() ([]*Root, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the image roots in %s: %w", s.Dir, err)
	}
	var roots []*Root
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		digest := s.DigestOf(filepath.Join(s.Dir, n))
		if digest == "" {
			continue
		}
		r, err := s.Lookup(digest)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		if r.Size == 0 {
			r.Size = fsutil.DiskUsage(r.Path)
			if b, err := json.MarshalIndent(r, "", "  "); err == nil {
				_ = fsutil.WriteFileAtomic(r.Path+recordSuffix, append(b, '\n'), 0o600) // counted again next time if not
			}
		}
		roots = append(roots, r)
	}
	return roots, nil
}

// Options say how Ensure builds a missing root.
type Options struct {
	Image *registry.Image
	Ref   string
	Cache *cache.Cache
	Pull  pull.Options
	Init  initinstall.Sources
	// JournalDir is where the build keeps its own journal (a killed build
	// leaves nothing but what the next run's recovery takes back). A
	// complete root stays when the caller's run fails afterwards, as the
	// cache's blobs do: 'cache prune' frees it once no machine uses it.
	JournalDir string
	Now        time.Time
}

// Ensure returns the root of o.Image, building it when the store has none;
// pulled is the unpack's result then (nil when the root was there).
func (s Store) Ensure(ctx context.Context, o Options) (root *Root, pulled *pull.Result, err error) {
	digest := o.Image.Digest.String()
	if root, err = s.Lookup(digest); err != nil || root != nil {
		return root, nil, err
	}
	final, err := s.Path(digest)
	if err != nil {
		return nil, nil, err
	}
	if !filepath.IsAbs(s.Dir) {
		return nil, nil, fmt.Errorf("the image root store %q is not an absolute path (config paths.images)", s.Dir)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating the image root store %s: %w", s.Dir, err)
	}
	j, err := journal.Begin(o.JournalDir, "image root "+digest)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, j.Rollback())
		} else if cerr := j.Commit(); cerr != nil {
			err = cerr
		}
	}()
	root = &Root{Digest: digest, Path: final, Ref: o.Ref, Created: o.Now}
	if root.Created.IsZero() {
		root.Created = time.Now()
	}
	stage, err := s.stage(j, final)
	if err != nil {
		return nil, nil, err
	}
	if root.Btrfs, err = btrfs.IsSubvolume(stage); err != nil {
		return nil, nil, err
	}
	if root.Btrfs {
		pulled, root.Chain, err = s.unpackChained(ctx, j, o, stage)
	} else {
		pulled, err = pull.Unpack(ctx, o.Cache, o.Image, stage, o.Pull)
	}
	if err != nil {
		return nil, nil, err
	}
	if root.Init, err = initinstall.Install(stage, o.Init); err != nil {
		return nil, nil, err
	}
	if root.Protect, err = protect.Protect(stage); err != nil {
		return nil, nil, err
	}
	if err := mountPoints(stage, o.Image.Config.Config.Volumes); err != nil {
		return nil, nil, fmt.Errorf("image root of %s: %w", digest, err)
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := j.Log(journal.Record{Op: journal.OpRename, From: stage, Path: final}); err != nil {
		return nil, nil, err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, stage, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// Another run built it meanwhile: use that one; this run's
			// tree goes with the rollback of its journal.
			if r, lerr := s.Lookup(digest); lerr == nil && r != nil {
				return r, pulled, j.Rollback()
			}
		}
		return nil, nil, fmt.Errorf("moving %s to %s: %w", stage, final, err)
	}
	if root.Btrfs {
		if err := btrfs.SetReadOnly(final, true); err != nil {
			return nil, nil, err
		}
	}
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	// A root without a record (a crash right after its rename) is still a
	// root: Lookup fills in what the tree itself tells.
	if err := fsutil.WriteFileAtomic(final+recordSuffix, append(b, '\n'), 0o600); err != nil {
		return nil, nil, err
	}
	return root, pulled, nil
}

// stage makes the staging dir of final, journaled: a subvolume on btrfs.
func (s Store) stage(j *journal.Journal, final string) (string, error) {
	onBtrfs, err := btrfs.Is(s.Dir)
	if err != nil {
		return "", err
	}
	create := func(p string) error { return os.Mkdir(p, 0o700) }
	if onBtrfs {
		create = btrfs.Create
	}
	stage, err := j.CreateUnique(s.Dir, "."+filepath.Base(final)+stagingMark, create)
	if err != nil {
		return "", fmt.Errorf("creating a staging dir in %s: %w", s.Dir, err)
	}
	return stage, nil
}

// chainsDir, in the store, holds the layer chains (btrfs).
const chainsDir = ".chains"

// chainIDs returns the OCI ChainID of each prefix of layers:
// ChainID(L1) = DiffID(L1), ChainID(L1..Ln) = sha256(ChainID(L1..Ln-1) +
// " " + DiffID(Ln)).
func chainIDs(layers []registry.Layer) []string {
	ids := make([]string, len(layers))
	for i, l := range layers {
		if i == 0 {
			ids[i] = l.DiffID.String()
			continue
		}
		sum := sha256.Sum256([]byte(ids[i-1] + " " + l.DiffID.String()))
		ids[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return ids
}

// chainPath is where the chain id is kept.
func (s Store) chainPath(id string) string {
	n, _ := name(id)
	return filepath.Join(s.Dir, chainsDir, n)
}

// unpackChained fills stage, an empty subvolume, with o.Image's layers: it
// starts from a snapshot of the longest kept chain of its first layers,
// applies the rest but the last, keeps that chain for the next image
// (a new version whose top layer alone changed), then applies the last.
// It returns the chain kept for the image, if any.
func (s Store) unpackChained(ctx context.Context, j *journal.Journal, o Options, stage string) (*pull.Result, string, error) {
	layers := o.Image.Layers
	if len(layers) < 2 {
		res, err := pull.Unpack(ctx, o.Cache, o.Image, stage, o.Pull)
		return res, "", err
	}
	ids := chainIDs(layers)
	n := len(layers)
	have := 0
	for k := n - 1; k > 0; k-- {
		if _, err := os.Lstat(s.chainPath(ids[k-1])); err == nil {
			have = k
			break
		}
	}
	if have > 0 {
		// The stage's subvolume gives way to a snapshot of the chain.
		if err := btrfs.Delete(stage); err != nil {
			return nil, "", err
		}
		if err := btrfs.Snapshot(s.chainPath(ids[have-1]), stage, false); err != nil {
			return nil, "", err
		}
	}
	total := &pull.Result{Ref: registry.DisplayName(o.Image.Ref), Digest: o.Image.Digest, Source: o.Image.Source, Layers: n}
	apply := func(from, to int) error {
		sub := *o.Image
		sub.Layers = layers[from:to]
		opts := o.Pull
		opts.OnTop = from > 0
		res, err := pull.Unpack(ctx, o.Cache, &sub, stage, opts)
		if err != nil {
			return err
		}
		total.Fetched += res.Fetched
		total.FetchedBytes += res.FetchedBytes
		total.Stats.Add(res.Stats)
		total.Source = res.Source
		return nil
	}
	if have < n-1 {
		if err := apply(have, n-1); err != nil {
			return nil, "", err
		}
		if err := s.keepChain(j, stage, ids[n-2]); err != nil {
			return nil, "", err
		}
	}
	if err := apply(n-1, n); err != nil {
		return nil, "", err
	}
	return total, ids[n-2], nil
}

// keepChain snapshots stage, read-only, as chain id. It is a cache: a
// crash leaves at most a staging snapshot, which the journal takes back.
func (s Store) keepChain(j *journal.Journal, stage, id string) error {
	final := s.chainPath(id)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	tmp, err := j.CreateUnique(filepath.Dir(final), "."+filepath.Base(final)+stagingMark,
		func(p string) error { return btrfs.Snapshot(stage, p, true) })
	if err != nil {
		return err
	}
	if err := j.Log(journal.Record{Op: journal.OpRename, From: tmp, Path: final}); err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return nil // kept by another run meanwhile; this one goes with the journal
	}
	return err
}

// freeChains deletes the chains that no root's record names.
func (s Store) freeChains() error {
	ents, err := os.ReadDir(filepath.Join(s.Dir, chainsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	roots, err := s.List()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, r := range roots {
		if r.Chain != "" {
			used[filepath.Base(s.chainPath(r.Chain))] = true
		}
	}
	var errs []error
	for _, e := range ents {
		if used[e.Name()] {
			continue
		}
		if err := btrfs.RemoveAll(filepath.Join(s.Dir, chainsDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mountPoints makes what systemd-nspawn mounts over in a read-only root,
// where the image lacks it: /man8env.env, /etc/resolv.conf (each a file
// bound from the machine's config dir) and the image's volumes. An image's
// path that is a symlink is left as it is (nspawn resolves it inside the
// machine).
func mountPoints(root string, volumes map[string]struct{}) error {
	vols := make([]string, 0, len(volumes))
	for v := range volumes {
		vols = append(vols, v)
	}
	slices.Sort(vols)
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, f := range []string{man8env.EnvPath, ResolvConf} {
		rel := strings.TrimPrefix(path.Clean("/"+f), "/")
		if _, err := r.Lstat(rel); err == nil {
			continue
		}
		if err := r.MkdirAll(path.Dir(rel), 0o755); err != nil {
			return fmt.Errorf("making the parents of %s: %w", f, err)
		}
		fh, err := r.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("making mount point %s: %w", f, err)
		}
		fh.Close()
	}
	for _, v := range vols {
		rel := strings.TrimPrefix(path.Clean("/"+v), "/")
		if rel == "" {
			continue
		}
		if _, err := r.Lstat(rel); err == nil {
			continue
		}
		if err := r.MkdirAll(rel, 0o755); err != nil {
			return fmt.Errorf("making mount point of volume %s: %w", v, err)
		}
	}
	return nil
}

// ResolvConf is the resolver file a strict machine gets bound from its
// config dir: its root is read-only, and man8s-init writes the lease's
// servers into it.
const ResolvConf = "/etc/resolv.conf"

// Remove deletes the root of digest and its record. The caller checks that
// no machine uses it.
func (s Store) Remove(digest string) error {
	p, err := s.Path(digest)
	if err != nil {
		return err
	}
	if err := btrfs.RemoveAll(p); err != nil {
		return fmt.Errorf("deleting image root %s: %w", p, err)
	}
	if err := os.Remove(p + recordSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Snapshot makes dst, which must not exist, a writable btrfs snapshot of
// root. ok is false (and nothing made) where the root is not a subvolume
// or dst is on another file system: the caller unpacks instead.
func Snapshot(root *Root, dst string) (ok bool, err error) {
	if !root.Btrfs {
		return false, nil
	}
	if same, err := btrfs.Is(filepath.Dir(dst)); err != nil || !same {
		return false, err
	}
	err = btrfs.Snapshot(root.Path, dst, false)
	if errors.Is(err, unix.EXDEV) {
		return false, nil
	}
	return err == nil, err
}

// ErrBusy says that runs are making machines from the store's roots: what
// no machine uses yet may be about to be used, so nothing is freed.
var ErrBusy = errors.New("machines are being made from the image roots right now: run it again when they are done")

// lockFile, in Dir, is flock'ed shared by every run that links or
// snapshots a root until its machine's files name the root, and
// exclusively by Free.
const lockFile = ".lock"

func (s Store) lock(how int) (*os.File, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the image root store %s: %w", s.Dir, err)
	}
	p := filepath.Join(s.Dir, lockFile)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Use takes the store's shared lock (waiting while Free runs) and returns
// its release, which may be called more than once.
func (s Store) Use() (release func(), err error) {
	f, err := s.lock(unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("locking the image root store %s: %w", s.Dir, err)
	}
	var once bool
	return func() {
		if !once {
			once = true
			f.Close()
		}
	}, nil
}

// Free deletes every root whose digest used does not hold, of those in
// only (nil: all), and returns them. While any run holds the shared lock
// it frees nothing (ErrBusy).
func (s Store) Free(used map[string][]string, only []string) ([]*Root, error) {
	roots, err := s.List()
	if err != nil || len(roots) == 0 {
		return nil, err
	}
	f, err := s.lock(unix.LOCK_EX | unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, ErrBusy
	}
	if err != nil {
		return nil, fmt.Errorf("locking the image root store %s: %w", s.Dir, err)
	}
	defer f.Close()
	var freed []*Root
	var errs []error
	for _, r := range roots {
		if len(used[r.Digest]) > 0 || (only != nil && !slices.Contains(only, r.Digest)) {
			continue
		}
		if err := s.Remove(r.Digest); err != nil {
			errs = append(errs, err)
			continue
		}
		freed = append(freed, r)
	}
	if len(freed) > 0 {
		errs = append(errs, s.freeChains())
	}
	return freed, errors.Join(errs...)
}
