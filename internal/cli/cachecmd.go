package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/image/cache"
)

func newCacheCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("cache", "Manage the image content cache",
		`Downloaded image blobs are kept in the cache dir (paths.cache), an OCI image
layout, so that a second pull of the same image, or of one sharing layers,
downloads only what is missing. The cache can be deleted at any time: it only
makes pulls faster.`)
	cmd.AddCommand(newCacheListCmd(f), newCachePruneCmd(f), newCacheClearCmd(f))
	return cmd
}

// openCache opens the cache dir of the configuration.
func openCache(f *Factory) (*cache.Cache, error) {
	cfg, _, err := f.Config()
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
	Pulled    time.Time `json:"pulled"`
	LastUsed  time.Time `json:"last_used"`
}

func newCacheListCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List cached images with their digests, sizes and last use",
		Long: `List the images in the cache: reference, manifest digest, the size of all
blobs the image needs, and when it was last used.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCache(f)
			if err != nil {
				return err
			}
			entries, err := c.List()
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]cacheEntryJSON, 0, len(entries))
				for _, e := range entries {
					out = append(out, cacheEntryJSON{e.Ref, e.Digest.String(), string(e.MediaType), e.Size, e.Pulled, e.LastUsed})
				}
				return writeJSON(f.IO.Out, out)
			}
			if len(entries) == 0 {
				fmt.Fprintf(f.IO.ErrOut, "the cache %s holds no images\n", c.Dir())
				return nil
			}
			tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCE\tDIGEST\tSIZE\tLAST USED")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Ref, shortDigest(e.Digest.String()), humanBytes(e.Size), e.LastUsed.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newCachePruneCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete blobs that no cached image needs",
		Long: `Delete the blobs that no image listed by 'mbctl cache list' refers to, and
temp files left by interrupted downloads. Waits for running pulls to finish.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCache(f)
			if err != nil {
				return err
			}
			res, err := c.Prune(cmd.Context())
			if err != nil {
				return err
			}
			for _, m := range res.Missing {
				fmt.Fprintf(f.IO.ErrOut, "warning: blob %s of a cached image is missing; pull the image again\n", m)
			}
			_, err = fmt.Fprintf(f.IO.Out, "deleted %d blobs and %d temp files, %s freed\n", res.Blobs, res.TempFiles, humanBytes(res.Bytes))
			return err
		},
	}
}

func newCacheClearCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "clear",
		Short: "Delete the whole cache",
		Long: `Delete every blob and forget every image in the cache. Machines are not
affected: their root filesystems do not depend on the cache. Waits for running
pulls to finish.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCache(f)
			if err != nil {
				return err
			}
			res, err := c.Clear(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(f.IO.Out, "deleted %d blobs, %s freed\n", res.Blobs+res.TempFiles, humanBytes(res.Bytes))
			return err
		},
	}
}
