package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/image/cache"
)

// CacheVerifyOptions are the inputs of `cache verify`.
type CacheVerifyOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger

	Repair bool
	JSON   bool
}

// NewCmdCacheVerify builds `cache verify`; runF, if not nil, replaces
// cacheVerifyRun (tests).
func NewCmdCacheVerify(f *Factory, runF func(context.Context, *CacheVerifyOptions) error) *cobra.Command {
	opts := &CacheVerifyOptions{IO: f.IO, Config: f.Config, Log: f.Logger()}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Hash every cached blob and report (or --repair) what is wrong",
		Long: `Hash every blob of the content cache and report the bad ones (content that
does not match its digest, unreadable, truncated), the blobs that cached images
need but lack, temp files of interrupted downloads, and an index.json that
cannot be used. Pulls go on meanwhile. Exits 1 if anything is wrong.

With --repair (waits for running pulls) bad blobs and temp files are deleted
and a bad index.json is moved aside and rebuilt from the blobs (image tags
cannot be recovered: pull an image again to tag it). A pull also repairs what
it uses on its own: a corrupt manifest, config or layer is fetched again.`,
		Example: `  sudo mbctl cache verify
  sudo mbctl cache verify --repair
  sudo mbctl cache verify --json | jq '.bad[].digest'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return cacheVerifyRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Repair, "repair", false, "delete bad blobs and temp files and rebuild a bad index.json")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the report as JSON")
	return cmd
}

func cacheVerifyRun(ctx context.Context, opts *CacheVerifyOptions) error {
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	c, err := cache.OpenWith(cfg.Paths.Cache, cache.Options{Log: opts.Log})
	if err != nil {
		return err
	}
	rep, err := c.Verify(ctx, opts.Repair)
	if err != nil {
		return fmt.Errorf("verifying cache %s: %w", c.Dir(), err)
	}
	if opts.JSON {
		if err := writeJSON(opts.IO.Out, rep); err != nil {
			return err
		}
	} else {
		printVerify(opts.IO.Out, &rep)
	}
	if rep.Clean() || (opts.Repair && repaired(&rep)) {
		return nil
	}
	return &exitStatusError{code: exitError}
}

// repaired reports whether a repair took care of everything it found
// (missing blobs are fetched by the next pull, not by a repair).
func repaired(r *cache.VerifyReport) bool {
	for _, b := range r.Bad {
		if !b.Removed {
			return false
		}
	}
	for _, tf := range r.TempFiles {
		if !tf.Removed {
			return false
		}
	}
	return r.Index == nil || r.Index.Rebuilt
}

func printVerify(w io.Writer, r *cache.VerifyReport) {
	fmt.Fprintf(w, "%s: %d blobs, %s hashed\n", r.Dir, r.Blobs, humanBytes(r.Bytes))
	done := func(removed bool) string {
		if removed {
			return " (removed)"
		}
		return ""
	}
	for _, b := range r.Bad {
		fmt.Fprintf(w, "bad blob %s: %s%s\n", b.Digest, b.Error, done(b.Removed))
	}
	for _, m := range r.Missing {
		fmt.Fprintf(w, "missing blob %s, needed by %v: pull the image again\n", m.Digest, m.NeededBy)
	}
	for _, tf := range r.TempFiles {
		fmt.Fprintf(w, "temp file %s (%s, %s)%s\n", tf.Path, humanBytes(tf.Size), tf.ModTime.Local().Format("2006-01-02 15:04"), done(tf.Removed))
	}
	if ix := r.Index; ix != nil {
		fmt.Fprintf(w, "index %s: %s", ix.Path, ix.Error)
		if ix.Rebuilt {
			fmt.Fprintf(w, " (rebuilt with %d images; the old one is %s)", len(ix.Recovered), ix.MovedTo)
		}
		fmt.Fprintln(w)
	}
	switch {
	case r.Clean():
		fmt.Fprintln(w, "the cache is sound")
	case r.Repair:
		fmt.Fprintf(w, "repaired: %s freed; run 'mbctl cache verify' again to check\n", humanBytes(r.FreedBytes))
	default:
		fmt.Fprintln(w, "run 'mbctl cache verify --repair' to fix it")
	}
}
