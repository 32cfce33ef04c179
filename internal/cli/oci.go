package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
)

func newOCICmd(f *Factory) *cobra.Command {
	cmd := groupCmd("oci", "Work with OCI images without creating a machine",
		`Low-level image commands: inspect an image in a registry, download and
unpack it into a directory, or install man8s-init into a root filesystem.

IMAGE is a Docker-style reference: "registry:2" means
docker.io/library/registry:2, the tag defaults to "latest", and a digest
(name@sha256:...) pins the exact image. Registry mirrors, insecure registries
and an extra CA come from the configuration ([registries]); credentials from
"docker login" (~/.docker/config.json, $DOCKER_CONFIG), its credential
helpers, or "podman login" ($REGISTRY_AUTH_FILE, containers' auth.json).`)
	cmd.AddCommand(
		newOCIDownloadCmd(f),
		newOCIInspectCmd(f),
		newOCIMan8initCmd(f),
	)
	return cmd
}

// resolveImage parses ref and resolves it with the configuration's
// registry settings for the platform given (empty: this host's).
func resolveImage(ctx context.Context, f *Factory, ref, platform string) (*registry.Image, error) {
	cfg, _, err := f.Config()
	if err != nil {
		return nil, err
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	opts := registry.Options{
		Mirrors:  cfg.Registries.Mirrors,
		Insecure: cfg.Registries.Insecure,
		CAFile:   cfg.Registries.CAFile,
		Log:      f.Logger(),
	}
	if platform != "" {
		if opts.Platform, err = registry.ParsePlatform(platform); err != nil {
			return nil, usagef("--platform: %v", err)
		}
	}
	return registry.Resolve(ctx, r, opts)
}

func newOCIDownloadCmd(f *Factory) *cobra.Command {
	var platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "download IMAGE PATH",
		Short: "Download IMAGE and unpack its root filesystem at PATH",
		Long: `Download IMAGE and unpack its root filesystem into the new directory PATH.

Layers download in parallel into the content cache (paths.cache), are checked
against their digests, and are unpacked in order as soon as each is there.
Blobs already in the cache are not downloaded again. Everything is unpacked
into a staging directory next to PATH and renamed into place at the end: on
an error or Ctrl-C nothing is left at PATH.

This does not install man8s-init or create a machine; see 'mbctl machines pull'.`,
		Example: `  mbctl oci download debian:bookworm /var/tmp/debian
  mbctl oci download --platform linux/arm64 registry:2 ./registry-rootfs`,
		Args: exactArgs("IMAGE", "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			start := time.Now()
			im, err := resolveImage(ctx, f, args[0], platform)
			if err != nil {
				return err
			}
			c, err := openCache(f)
			if err != nil {
				return err
			}
			progress := newPullProgress(f, quiet)
			res, err := pull.Download(ctx, c, im, args[1], pull.Options{Progress: progress, Log: f.Logger()})
			progress.Done(err == nil)
			if err != nil {
				return fmt.Errorf("downloading %s: %w", args[0], err)
			}
			if !quiet {
				fmt.Fprintf(f.IO.ErrOut, "unpacked %d %s (%d downloaded, %s; %d from the cache): %d entries, %s, in %.1fs\n",
					res.Layers, plural(res.Layers, "layer", "layers"), res.Fetched, humanBytes(res.FetchedBytes), res.Layers-res.Fetched,
					res.Stats.Entries, humanBytes(res.Stats.Bytes), time.Since(start).Seconds())
			}
			_, err = fmt.Fprintf(f.IO.Out, "%s@%s\n", res.Ref, res.Digest)
			return err
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "image platform os/arch[/variant] for multi-platform images (default: this host's)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the resolved reference and digest")
	return cmd
}

func newOCIInspectCmd(f *Factory) *cobra.Command {
	var platform string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Print an image's configuration and layers without downloading them",
		Long: `Print what a machine made from IMAGE would run: entrypoint, command,
environment, volumes, exposed ports, working directory, user, stop signal and
labels, and the image's layers. Only the manifest and config are fetched.`,
		Example: `  mbctl oci inspect registry:2
  mbctl oci inspect --json ghcr.io/example/app:1.2 | jq .volumes`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			im, err := resolveImage(cmd.Context(), f, args[0], platform)
			if err != nil {
				return err
			}
			s := registry.Inspect(im)
			if asJSON {
				return writeJSON(f.IO.Out, s)
			}
			return printSummary(f, s)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "image platform os/arch[/variant] (default: this host's)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printSummary(f *Factory, s registry.Summary) error {
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	list := func(v []string) string {
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ", ")
	}
	row("Reference", s.Reference)
	row("Digest", s.Digest)
	if s.IndexDigest != "" {
		row("Index digest", s.IndexDigest)
	}
	row("Platform", s.Platform)
	if !s.Created.IsZero() {
		row("Created", s.Created.Format(time.RFC3339))
	}
	row("Entrypoint", quoteArgv(s.Entrypoint))
	row("Cmd", quoteArgv(s.Cmd))
	row("Working dir", orDash(s.WorkingDir))
	row("User", orDash(s.User))
	row("Stop signal", orDash(s.StopSignal))
	row("Volumes", list(s.Volumes))
	row("Exposed ports", list(s.ExposedPorts))
	for i, e := range s.Env {
		k := ""
		if i == 0 {
			k = "Env"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k+":", e)
	}
	for k, v := range s.Labels {
		fmt.Fprintf(tw, "Label:\t%s=%s\n", k, v)
	}
	row("Layers", fmt.Sprintf("%d, %s", len(s.Layers), humanBytes(s.TotalSize)))
	for i, l := range s.Layers {
		fmt.Fprintf(tw, "  %d\t%s  %s  %s\n", i+1, l.Digest, humanBytes(l.Size), l.MediaType)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// quoteArgv shows an argv as JSON-ish words, so spaces stay visible.
func quoteArgv(argv []string) string {
	if len(argv) == 0 {
		return "-"
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
