package cli

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/imageroot"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/image/cache"
)

func newCacheCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("cache", "Manage the image content cache",
		`Downloaded image blobs are kept in the cache dir (paths.cache), an OCI image
layout, so that a second pull of the same image, or of one sharing layers,
downloads only what is missing. The cache can be deleted at any time: it only
makes pulls faster.`)
	cmd.AddCommand(NewCmdCacheList(f, nil), NewCmdCachePrune(f, nil), NewCmdCacheClear(f, nil), NewCmdCacheVerify(f, nil))
	return cmd
}

// openCache opens the cache dir of the configuration.
func openCache(f *Factory) (*cache.Cache, error) {
	return openConfiguredCache(f.Config)
}

// openConfiguredCache opens the cache dir (paths.cache) of the
// configuration that loadConfig returns.
func openConfiguredCache(loadConfig func() (config.Config, config.Origin, error)) (*cache.Cache, error) {
	cfg, _, err := loadConfig()
	if err != nil {
		return nil, err
	}
	return cache.Open(cfg.Paths.Cache)
}

// cacheEntryJSON is one image of `cache list --json`.
type cacheEntryJSON struct {
	Ref       string    `json:"ref"`
	Digest    string    `json:"digest"`
	MediaType string    `json:"media_type"`
	Size      int64     `json:"size"`
	Pulled    time.Time `json:"pulled,omitzero"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	// ImageRoot is the image's root in the image root store, if it has
	// one; an image whose root outlived its blobs has only this.
	ImageRoot *cacheRootJSON `json:"image_root,omitempty"`
}

// cacheRootJSON is an image root in `cache list --json`.
type cacheRootJSON struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Btrfs bool   `json:"btrfs"`
	// UsedBy are the machines that run it or can roll back to it; the
	// root stays while there are any.
	UsedBy []string `json:"used_by"`
}

// CacheListOptions are the inputs of `cache list`.
type CacheListOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger

	JSON bool
}

// NewCmdCacheList builds `cache list`; runF, if not nil, replaces
// cacheListRun (tests).
func NewCmdCacheList(f *Factory, runF func(context.Context, *CacheListOptions) error) *cobra.Command {
	opts := &CacheListOptions{IO: f.IO, Config: f.Config, Log: f.Logger()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List cached images with their digests, sizes, last use and image roots",
		Long: `List the images in the cache: reference, manifest digest, the size of all
blobs the image needs that are in the cache, and when it was last used. A blob
that several images share counts in the size of each.

IMAGE ROOT is the image's unpacked tree in the image root store
(paths.images), which strict machines run on and btrfs machines are
snapshots of: its size and the machines that use it. It stays while any
does; 'cache prune' deletes the unused ones.`,
		Example: `  $ mbctl cache list
  REFERENCE                     DIGEST               SIZE      LAST USED            IMAGE ROOT
  docker.io/library/nginx:1.27  sha256:5c1a3b0f8e2d  68.4 MiB  2025-01-20 14:03:11  187.0 MiB, used by web web2

  # the references only
  mbctl cache list --json | jq -r '.[].ref'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return cacheListRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print ref, digest, media_type, size (bytes), pulled, last_used and image_root (path, size, btrfs, used_by) of each image as JSON")
	return cmd
}

func cacheListRun(_ context.Context, opts *CacheListOptions) error {
	c, err := openConfiguredCache(opts.Config)
	if err != nil {
		return err
	}
	entries, err := c.List()
	if err != nil {
		return err
	}
	out := make([]cacheEntryJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, cacheEntryJSON{Ref: e.Ref, Digest: e.Digest.String(), MediaType: string(e.MediaType), Size: e.Size, Pulled: e.Pulled, LastUsed: e.LastUsed})
	}
	if out, err = withImageRoots(opts.Config, out); err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, out)
	}
	if len(out) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "the cache %s holds no images\n", c.Dir())
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tDIGEST\tSIZE\tLAST USED\tIMAGE ROOT")
	for _, e := range out {
		size := "-"
		if e.MediaType != "" {
			size = humanBytes(e.Size)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", orDash(e.Ref), shortDigest(e.Digest), size, localTime(e.LastUsed), rootColumn(e.ImageRoot))
	}
	return tw.Flush()
}

// withImageRoots adds each image's root in the image root store to out,
// and the roots of images no longer cached as entries of their own.
func withImageRoots(loadConfig func() (config.Config, config.Origin, error), out []cacheEntryJSON) ([]cacheEntryJSON, error) {
	cfg, _, err := loadConfig()
	if err != nil {
		return nil, err
	}
	roots, err := imageroot.Store{Dir: cfg.Paths.Images}.List()
	if err != nil || len(roots) == 0 {
		return out, err
	}
	used, err := provision.ImageRootUsers(cfg.Paths)
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		users := used[r.Digest]
		slices.Sort(users)
		j := &cacheRootJSON{Path: r.Path, Size: r.Size, Btrfs: r.Btrfs, UsedBy: append([]string{}, users...)}
		i := slices.IndexFunc(out, func(e cacheEntryJSON) bool { return e.Digest == r.Digest })
		if i < 0 {
			out = append(out, cacheEntryJSON{Ref: r.Ref, Digest: r.Digest, ImageRoot: j})
			continue
		}
		out[i].ImageRoot = j
	}
	return out, nil
}

// rootColumn is the IMAGE ROOT column of cache list.
func rootColumn(r *cacheRootJSON) string {
	if r == nil {
		return "-"
	}
	if len(r.UsedBy) == 0 {
		return humanBytes(r.Size) + ", unused"
	}
	return humanBytes(r.Size) + ", used by " + strings.Join(r.UsedBy, " ")
}

// localTime formats t for a table; the zero time (unknown) is "-".
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// cacheClearReport is the --json form of `cache clear`: what was deleted.
type cacheClearReport struct {
	Cache     string `json:"cache"`
	Blobs     int    `json:"blobs"`
	TempFiles int    `json:"temp_files"`
	Bytes     int64  `json:"bytes"`
}

// cachePruneReport is the --json form of `cache prune`.
type cachePruneReport struct {
	cacheClearReport
	// Missing lists the blobs that a cached image needs and lacks.
	Missing []string `json:"missing"`
	// ImageRoots are the image roots deleted (no machine used them), and
	// ImageRootBytes the size of their files.
	ImageRoots     []string `json:"image_roots"`
	ImageRootBytes int64    `json:"image_root_bytes"`
}

// CachePruneOptions are the inputs of `cache prune`.
type CachePruneOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger

	JSON bool
}

// NewCmdCachePrune builds `cache prune`; runF, if not nil, replaces
// cachePruneRun (tests).
func NewCmdCachePrune(f *Factory, runF func(context.Context, *CachePruneOptions) error) *cobra.Command {
	opts := &CachePruneOptions{IO: f.IO, Config: f.Config, Log: f.Logger()}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete blobs that no cached image needs, and image roots no machine uses",
		Long: `Delete the blobs that no image listed by 'mbctl cache list' refers to, and
temp files left by interrupted downloads. Then delete the image roots
(paths.images) that no machine runs or can roll back to; a root stays while
machines are being made. Cached images stay whole, so it
never asks. Waits for running pulls to finish. Before that it takes back what
killed mbctl runs left (as 'mbctl host clean' does).

A blob that a cached image needs but that is missing is reported (pulling the
image again fetches it); nothing else is done about it.`,
		Example: `  $ sudo mbctl cache prune
  deleted 12 blobs and 1 temp files, 310.2 MiB freed

  sudo mbctl cache prune --json | jq .bytes`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return cachePruneRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the cache dir, blobs, temp_files and bytes deleted, the missing blobs, and the image_roots deleted with image_root_bytes as JSON")
	return cmd
}

func cachePruneRun(ctx context.Context, opts *CachePruneOptions) error {
	c, err := openConfiguredCache(opts.Config)
	if err != nil {
		return err
	}
	if cfg, _, err := opts.Config(); err == nil {
		cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	}
	res, err := c.Prune(ctx)
	if err != nil {
		return err
	}
	var rootsFreed []string
	var rootBytes int64
	if cfg, _, err := opts.Config(); err == nil {
		freed, err := provision.FreeImageRoots(cfg.Paths, nil)
		for _, r := range freed {
			rootsFreed, rootBytes = append(rootsFreed, r.Path), rootBytes+r.Size
		}
		if err != nil {
			fmt.Fprintf(opts.IO.ErrOut, "warning: image roots no machine uses stay: %v\n", err)
		}
	}
	missing := make([]string, 0, len(res.Missing))
	for _, m := range res.Missing {
		missing = append(missing, m.String())
		fmt.Fprintf(opts.IO.ErrOut, "warning: blob %s of a cached image is missing; pull the image again\n", m)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, cachePruneReport{cacheClearReport{c.Dir(), res.Blobs, res.TempFiles, res.Bytes}, missing, append([]string{}, rootsFreed...), rootBytes})
	}
	if _, err = fmt.Fprintf(opts.IO.Out, "deleted %d blobs and %d temp files, %s freed\n", res.Blobs, res.TempFiles, humanBytes(res.Bytes)); err != nil {
		return err
	}
	if len(rootsFreed) > 0 {
		_, err = fmt.Fprintf(opts.IO.Out, "deleted %d image roots no machine uses, %s freed\n", len(rootsFreed), humanBytes(rootBytes))
	}
	return err
}

// CacheClearOptions are the inputs of `cache clear`.
type CacheClearOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Confirm asks on the terminal whether to go ahead.
	Confirm confirmFunc

	Yes  bool
	JSON bool
}

// NewCmdCacheClear builds `cache clear`; runF, if not nil, replaces
// cacheClearRun (tests).
func NewCmdCacheClear(f *Factory, runF func(context.Context, *CacheClearOptions) error) *cobra.Command {
	opts := &CacheClearOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Confirm: f.prompter().confirm}
	cmd := &cobra.Command{
		Use:   "clear",
		Short: "Delete the whole cache",
		Long: `Delete every blob and forget every image in the cache. Machines are not
affected: their root filesystems do not depend on the cache; the next pull of
an image downloads all of it again. Waits for running pulls to finish.

mbctl lists the cached images and asks first; --yes skips the question
(needed when there is no terminal).`,
		Example: `  $ sudo mbctl cache clear
  Clearing the cache /var/cache/man8s deletes 2 images:
    docker.io/library/nginx:1.27     68.4 MiB
    docker.io/library/registry:2     9.8 MiB
  Machines are not affected.
  Delete the whole cache? [y/N] y
  deleted 14 blobs and 0 temp files, 78.2 MiB freed

  # in a script: no question
  sudo mbctl cache clear --yes --json | jq .bytes`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return cacheClearRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the cache dir, blobs, temp_files and bytes deleted as JSON")
	return cmd
}

func cacheClearRun(ctx context.Context, opts *CacheClearOptions) error {
	c, err := openConfiguredCache(opts.Config)
	if err != nil {
		return err
	}
	what := "clearing the cache " + c.Dir()
	if !opts.Yes && opts.IO.IsStdinTTY() {
		// Say what would go, then ask.
		entries, err := c.List()
		if err != nil {
			return fmt.Errorf("%s: listing its images: %w", what, err)
		}
		printCacheSummary(opts.IO, c.Dir(), entries)
	}
	if err := confirmAction(ctx, opts.IO, opts.Confirm, opts.Yes, what, "Delete the whole cache?"); err != nil {
		return err
	}
	res, err := c.Clear(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, cacheClearReport{c.Dir(), res.Blobs, res.TempFiles, res.Bytes})
	}
	_, err = fmt.Fprintf(opts.IO.Out, "deleted %d blobs and %d temp files, %s freed\n", res.Blobs, res.TempFiles, humanBytes(res.Bytes))
	return err
}

// printCacheSummary tells, on stderr, what clearing the cache deletes.
func printCacheSummary(ios *iostreams.IOStreams, dir string, entries []cache.Entry) {
	var b strings.Builder
	switch len(entries) {
	case 0:
		fmt.Fprintf(&b, "The cache %s holds no images; clearing it deletes any leftover blobs.\n", dir)
	default:
		noun := "images"
		if len(entries) == 1 {
			noun = "image"
		}
		fmt.Fprintf(&b, "Clearing the cache %s deletes %d %s:\n", dir, len(entries), noun)
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for _, e := range entries {
			fmt.Fprintf(tw, "  %s\t%s\n", orDash(e.Ref), humanBytes(e.Size))
		}
		tw.Flush()
		fmt.Fprintln(&b, "Machines are not affected.")
	}
	fmt.Fprint(ios.ErrOut, b.String())
}
