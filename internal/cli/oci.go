package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/pull"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/image/unpack"
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
		NewCmdOCIDownload(f, nil),
		NewCmdOCIInspect(f, nil),
		NewCmdOCIMan8init(f, nil),
	)
	return cmd
}

// resolveImage parses ref and resolves it with the registry settings of cfg
// for the platform given (empty: this host's).
func resolveImage(ctx context.Context, cfg config.Config, log *slog.Logger, ref, platform string) (*registry.Image, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	header, idle, err := cfg.Registries.Timeouts()
	if err != nil {
		return nil, err
	}
	opts := registry.Options{
		Mirrors:               cfg.Registries.Mirrors,
		Insecure:              cfg.Registries.Insecure,
		CAFile:                cfg.Registries.CAFile,
		BlobAttempts:          cfg.Registries.Attempts,
		ResponseHeaderTimeout: header,
		IdleTimeout:           idle,
		Log:                   log,
	}
	if platform != "" {
		if opts.Platform, err = registry.ParsePlatform(platform); err != nil {
			return nil, usagef("--platform: %v", err)
		}
	}
	return registry.Resolve(ctx, r, opts)
}

// imageReport names the image a --json report is about.
type imageReport struct {
	// Ref is the reference as given; Resolved its full form.
	Ref         string `json:"ref"`
	Resolved    string `json:"resolved"`
	Digest      string `json:"digest"`
	IndexDigest string `json:"index_digest,omitempty"`
	Source      string `json:"source"`
	Platform    string `json:"platform"`
}

func newImageReport(im *registry.Image, ref string) imageReport {
	s := registry.Inspect(im)
	return imageReport{Ref: ref, Resolved: s.Reference, Digest: s.Digest, IndexDigest: s.IndexDigest, Source: s.Source, Platform: s.Platform}
}

// layersReport counts the layers of a pull: how many were downloaded (and
// their bytes) and how many came from the cache.
type layersReport struct {
	Total           int   `json:"total"`
	Downloaded      int   `json:"downloaded"`
	Cached          int   `json:"cached"`
	DownloadedBytes int64 `json:"downloaded_bytes"`
}

func newLayersReport(r *pull.Result) layersReport {
	return layersReport{Total: r.Layers, Downloaded: r.Fetched, Cached: r.Layers - r.Fetched, DownloadedBytes: r.FetchedBytes}
}

// unpackedReport is what the layers put into the root filesystem.
type unpackedReport struct {
	Entries   int   `json:"entries"`
	Bytes     int64 `json:"bytes"`
	Files     int   `json:"files"`
	Dirs      int   `json:"dirs"`
	Symlinks  int   `json:"symlinks"`
	Hardlinks int   `json:"hardlinks"`
	Devices   int   `json:"devices"`
	Whiteouts int   `json:"whiteouts"`
	Skipped   int   `json:"skipped"`
}

func newUnpackedReport(s unpack.Stats) unpackedReport {
	return unpackedReport{Entries: s.Entries, Bytes: s.Bytes, Files: s.Files, Dirs: s.Dirs, Symlinks: s.Symlinks,
		Hardlinks: s.Hardlinks, Devices: s.Devices, Whiteouts: s.Whiteouts, Skipped: s.Skipped}
}

// roundSeconds is d in seconds, to the millisecond.
func roundSeconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }

// OCIDownloadOptions are the inputs of `oci download`.
type OCIDownloadOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger

	// Getenv reads mbctl's fault hook (envFaultPause).
	Getenv func(string) string

	Image, Path string
	Platform    string
	Quiet       bool
	JSON        bool
}

// ociDownloadReport is the --json form of `oci download`.
type ociDownloadReport struct {
	Image    imageReport    `json:"image"`
	Path     string         `json:"path"`
	Layers   layersReport   `json:"layers"`
	Unpacked unpackedReport `json:"unpacked"`
	Seconds  float64        `json:"duration_seconds"`
}

// NewCmdOCIDownload builds `oci download`; runF, if not nil, replaces
// ociDownloadRun (tests).
func NewCmdOCIDownload(f *Factory, runF func(context.Context, *OCIDownloadOptions) error) *cobra.Command {
	opts := &OCIDownloadOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "download IMAGE PATH",
		Short: "Download IMAGE and unpack its root filesystem at PATH",
		Long: `Download IMAGE and unpack its root filesystem into the new directory PATH.

Layers download in parallel into the content cache (paths.cache), are checked
against their digests, and are unpacked in order as soon as each is there.
Blobs already in the cache are not downloaded again. Everything is unpacked
into a staging directory next to PATH and renamed into place at the end: on
an error or Ctrl-C nothing is left at PATH.

stdout gets the resolved reference and digest (NAME@sha256:...); progress and
the summary go to stderr. With --json, stdout is one JSON object instead
(image, absolute path, layer and unpack counts, duration) and progress, unless
--quiet, is plain lines on stderr, never bars.

This does not install man8s-init or create a machine; see 'mbctl machines pull'.`,
		Example: `  mbctl oci download debian:bookworm /var/tmp/debian
  mbctl oci download --platform linux/arm64 registry:2 ./registry-rootfs

  # pin what was unpacked
  digest=$(mbctl oci download --quiet --json alpine:3.20 ./alpine | jq -r .image.digest)`,
		Args: exactArgs("IMAGE", "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Image, opts.Path = args[0], args[1]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return ociDownloadRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Platform, "platform", "", "image platform os/arch[/variant] for multi-platform images (default: this host's)")
	cmd.Flags().BoolVarP(&opts.Quiet, "quiet", "q", false, "no progress or summary: print only the resolved reference and digest")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was unpacked as one JSON object on stdout (no progress bars)")
	return cmd
}

func ociDownloadRun(ctx context.Context, opts *OCIDownloadOptions) error {
	start := time.Now()
	dest, err := filepath.Abs(opts.Path)
	if err != nil {
		return fmt.Errorf("downloading %s: PATH %s: %w", opts.Image, opts.Path, err)
	}
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	im, err := resolveImage(ctx, cfg, opts.Log, opts.Image, opts.Platform)
	if err != nil {
		return err
	}
	c, err := cache.OpenWith(cfg.Paths.Cache, cache.Options{Log: opts.Log})
	if err != nil {
		return err
	}
	progress := newPullProgress(opts.IO, opts.Quiet, opts.JSON)
	res, err := pull.Download(ctx, c, im, dest, pull.Options{Progress: progress, Log: opts.Log,
		JournalDir: provision.JournalDir(cfg.Paths), BeforeStep: faultPause(ctx, opts.Getenv, opts.IO.ErrOut)})
	progress.Done(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %s not downloaded to %s: %w", opts.Image, opts.Path, err)
		}
		return fmt.Errorf("downloading %s: %w", opts.Image, err)
	}
	took := time.Since(start)
	if opts.JSON {
		return writeJSON(opts.IO.Out, ociDownloadReport{
			Image: newImageReport(im, opts.Image), Path: dest,
			Layers: newLayersReport(res), Unpacked: newUnpackedReport(res.Stats), Seconds: roundSeconds(took),
		})
	}
	if !opts.Quiet {
		fmt.Fprintf(opts.IO.ErrOut, "unpacked %d %s (%d downloaded, %s; %d from the cache): %d %s, %s, in %.1fs\n",
			res.Layers, plural(res.Layers, "layer", "layers"), res.Fetched, humanBytes(res.FetchedBytes), res.Layers-res.Fetched,
			res.Stats.Entries, plural(res.Stats.Entries, "entry", "entries"), humanBytes(res.Stats.Bytes), took.Seconds())
	}
	_, err = fmt.Fprintf(opts.IO.Out, "%s@%s\n", res.Ref, res.Digest)
	return err
}

// OCIInspectOptions are the inputs of `oci inspect`.
type OCIInspectOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger
	// Getenv reads $MBCTL_INIT and mbctl's fault hook (--probe).
	Getenv func(string) string
	// RunProbe runs the probe (default probe.Run; tests give a fake).
	RunProbe func(context.Context, probe.Input, probe.Config) (*probe.Findings, error)

	Image    string
	Platform string
	JSON     bool
	// Probe downloads and unpacks the image and probes its entrypoint;
	// ProbeTimeout bounds the probe (0: probe.Config's default).
	Probe        bool
	ProbeTimeout time.Duration
}

// NewCmdOCIInspect builds `oci inspect`; runF, if not nil, replaces
// ociInspectRun (tests).
func NewCmdOCIInspect(f *Factory, runF func(context.Context, *OCIInspectOptions) error) *cobra.Command {
	opts := &OCIInspectOptions{IO: f.IO, Config: f.Config, Log: f.Logger(), Getenv: f.Getenv, RunProbe: probe.Run}
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Print an image's configuration and layers without downloading them",
		Long: `Print what a machine made from IMAGE would run: entrypoint, command,
environment, volumes, exposed ports, working directory, user, stop signal and
labels (sorted by key), and the image's layers. Only the manifest and config
are fetched. --json prints the same as one JSON object.

--probe also downloads and unpacks the image into paths.scratch and runs its
entrypoint for a few seconds as PID 1, as man8s-init's exec-pid1 mode would
(environment, user, working dir), in a throwaway systemd-nspawn machine
without network, on an overlay that leaves the image untouched. It reports
which signals the entrypoint catches, ignores and blocks (/proc/PID/status),
whether it reaps a child it adopts, whether and how fast it exits on its stop
signal, whether it behaves as PID 1 should, and the init mode that
'machines pull --init-mode auto' would choose from that. The probe ends within
--probe-timeout, the machine is killed, and nothing of it is left, even when
mbctl is killed meanwhile.`,
		Example: `  mbctl oci inspect registry:2
  mbctl oci inspect --platform linux/arm64 nginx:1.27
  mbctl oci inspect --json ghcr.io/example/app:1.2 | jq .volumes
  mbctl oci inspect --probe --json nginx:1.27 | jq .probe.caught`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Image = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return ociInspectRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Platform, "platform", "", "image platform os/arch[/variant] (default: this host's)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print as JSON")
	cmd.Flags().BoolVar(&opts.Probe, "probe", false, "download the image and probe how its entrypoint behaves as PID 1 (signals, reaping, stop)")
	cmd.Flags().DurationVar(&opts.ProbeTimeout, "probe-timeout", 10*time.Second, "with --probe: end the probe, and kill its machine, after this long")
	return cmd
}

// ociInspectReport is the --json form of `oci inspect`: the summary, and
// with --probe what the probe found and what it means for the init mode.
type ociInspectReport struct {
	registry.Summary
	Probe *probeReport       `json:"probe,omitempty"`
	Init  *inspectInitReport `json:"init,omitempty"`
}

// inspectInitReport is the init a probed image has and the mode auto
// would choose for it.
type inspectInitReport struct {
	Detected    string `json:"detected"`
	Evidence    string `json:"evidence"`
	AutoMode    string `json:"auto_mode"`
	ModeReason  string `json:"mode_reason"`
	StopWarning string `json:"stop_warning,omitempty"`
}

// probeReport is what a probe found.
type probeReport struct {
	StopSignal string `json:"stop_signal"`
	// Caught, Ignored and Blocked are PID 1's signal dispositions;
	// SigWait says it waited in sigwait/sigtimedwait.
	Caught  []string `json:"caught"`
	Ignored []string `json:"ignored"`
	Blocked []string `json:"blocked"`
	SigWait bool     `json:"sigwait"`
	// Reaps is null when reaping could not be tested.
	Reaps   *bool `json:"reaps"`
	Zombies int   `json:"zombies"`
	Stop    struct {
		Signal string `json:"signal"`
		Sent   bool   `json:"sent"`
		Exited bool   `json:"exited"`
		// MS is the time to the exit, or how long the probe waited.
		MS     int64 `json:"ms"`
		Status *int  `json:"status,omitempty"`
	} `json:"stop"`
	ExitedEarly *struct {
		MS     int64 `json:"ms"`
		Status *int  `json:"status,omitempty"`
	} `json:"exited_early,omitempty"`
	// PID1 is the verdict (yes, no, unknown), PID1Reason why.
	PID1       string  `json:"pid1"`
	PID1Reason string  `json:"pid1_reason"`
	Seconds    float64 `json:"duration_seconds"`
	// Output is the end of the machine's console: man8s-init's steps and
	// the app's own output (left out at pull, where the app may print the
	// values given with --env).
	Output string `json:"output,omitempty"`
}

func newProbeReport(f *probe.Findings) *probeReport {
	status := func(st int) *int {
		if st < 0 {
			return nil
		}
		return &st
	}
	r := &probeReport{
		StopSignal: signals.Name(f.StopSignal), Caught: f.Caught.Names(), Ignored: f.Ignored.Names(), Blocked: f.Blocked.Names(),
		SigWait: f.SigWait, Zombies: f.Reap.Zombies, Seconds: roundSeconds(f.Took), Output: f.Output,
	}
	if f.Reap.Tested {
		r.Reaps = &f.Reap.Reaped
	}
	r.Stop.Signal, r.Stop.Sent, r.Stop.Exited, r.Stop.MS = signals.Name(f.Stop.Signal), f.Stop.Sent, f.Stop.Exited, f.Stop.After.Milliseconds()
	if f.Stop.Exited {
		r.Stop.Status = status(f.Stop.Status)
	}
	if f.Early != nil {
		r.ExitedEarly = &struct {
			MS     int64 `json:"ms"`
			Status *int  `json:"status,omitempty"`
		}{f.Early.After.Milliseconds(), status(f.Early.Status)}
	}
	v, why := f.AsPID1()
	r.PID1, r.PID1Reason = string(v), why
	return r
}

func ociInspectRun(ctx context.Context, opts *OCIInspectOptions) error {
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	im, err := resolveImage(ctx, cfg, opts.Log, opts.Image, opts.Platform)
	if err != nil {
		return err
	}
	s := registry.Inspect(im)
	if !opts.Probe {
		if opts.JSON {
			return writeJSON(opts.IO.Out, s)
		}
		return printSummary(opts.IO.Out, s)
	}
	f, d, err := probeImage(ctx, opts, cfg, im)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: probing %s: %w (its machine and files are gone)", opts.Image, err)
		}
		return fmt.Errorf("probing %s: %w (its machine and files are gone)", opts.Image, err)
	}
	mode, reason := imageinit.Choose(imageinit.Auto, d, f)
	ir := &inspectInitReport{Detected: string(d.Kind), Evidence: d.Evidence, AutoMode: string(mode), ModeReason: reason,
		StopWarning: imageinit.StopWarning(mode, d, f)}
	if opts.JSON {
		return writeJSON(opts.IO.Out, ociInspectReport{Summary: s, Probe: newProbeReport(f), Init: ir})
	}
	if err := printSummary(opts.IO.Out, s); err != nil {
		return err
	}
	return printProbe(opts.IO.Out, f, ir)
}

// probeImage downloads and unpacks im into a dir in paths.scratch, detects
// its init and probes its entrypoint. The dir is journaled (a killed run's
// is taken back by the next) and removed before it returns.
func probeImage(ctx context.Context, opts *OCIInspectOptions, cfg config.Config, im *registry.Image) (f *probe.Findings, d imageinit.Detection, err error) {
	cleanDeadRuns(opts.IO, opts.Log, cfg.Paths)
	if cfg.Paths.Scratch == "" {
		return nil, d, errors.New("no scratch dir (paths.scratch) configured")
	}
	src, err := locateInit(cfg, opts.Getenv, opts.Log)
	if err != nil {
		return nil, d, err
	}
	c, err := cache.OpenWith(cfg.Paths.Cache, cache.Options{Log: opts.Log})
	if err != nil {
		return nil, d, err
	}
	j, err := journal.Begin(provision.JournalDir(cfg.Paths), "oci inspect --probe "+opts.Image)
	if err != nil {
		return nil, d, err
	}
	defer func() {
		// Everything this run made goes, probe or not.
		if rerr := j.Rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the unpacked image (the next mbctl run tries again): %w", rerr))
		}
	}()
	dir, err := j.MkdirUnique(cfg.Paths.Scratch, "inspect-")
	if err != nil {
		return nil, d, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, d, err
	}
	progress := newPullProgress(opts.IO, false, opts.JSON)
	_, err = pull.Unpack(ctx, c, im, rootfs, pull.Options{Progress: progress, Log: opts.Log})
	progress.Done(err == nil)
	if err != nil {
		return nil, d, err
	}
	ic := im.Config.Config
	if d, err = imageinit.Detect(rootfs, slices.Concat(ic.Entrypoint, ic.Cmd)); err != nil {
		return nil, d, err
	}
	in, err := provision.ProbeInput(rootfs, machinefiles.Params{
		ImageRef: opts.Image, ImageDigest: im.Digest.String(), Image: ic, Version: buildinfo.Get().Version,
	})
	if err != nil {
		return nil, d, err
	}
	in.Scratch, in.Journal, in.BeforeStep = cfg.Paths.Scratch, j, faultPause(ctx, opts.Getenv, opts.IO.ErrOut)
	run := opts.RunProbe
	if run == nil {
		run = probe.Run
	}
	f, err = run(ctx, in, probe.Config{Init: src, Timeout: opts.ProbeTimeout, Log: opts.Log})
	return f, d, err
}

// printProbe prints what the probe found, as printSummary's rows.
func printProbe(w io.Writer, f *probe.Findings, ir *inspectInitReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	list := func(v []string) string {
		if len(v) == 0 {
			return "-"
		}
		return strings.Join(v, ", ")
	}
	fmt.Fprintf(tw, "\nProbe (the entrypoint as PID 1, %.1fs):\n", f.Took.Seconds())
	row("Caught signals", list(f.Caught.Names()))
	row("Ignored signals", list(f.Ignored.Names()))
	blocked := list(f.Blocked.Names())
	if f.SigWait {
		blocked += " (waits in sigtimedwait)"
	}
	row("Blocked signals", blocked)
	row("Reaps", f.ReapText())
	row("Stop ("+signals.Name(f.StopSignal)+")", f.StopText())
	if f.Early != nil {
		row("Exited by itself", fmt.Sprintf("%dms after it started%s (the probe runs it without network)", f.Early.After.Milliseconds(), exitStatus(f.Early.Status)))
	}
	v, why := f.AsPID1()
	row("As PID 1", fmt.Sprintf("%s: %s", v, why))
	row("Init", fmt.Sprintf("%s (%s)", ir.Detected, ir.Evidence))
	row("Auto mode", fmt.Sprintf("%s: %s", ir.AutoMode, ir.ModeReason))
	if ir.StopWarning != "" {
		row("Warning", ir.StopWarning)
	}
	if f.Early != nil && strings.TrimSpace(f.Output) != "" {
		fmt.Fprintln(tw, "Output:")
		for _, l := range strings.Split(strings.TrimRight(f.Output, "\n"), "\n") {
			fmt.Fprintf(tw, "  %s\n", l)
		}
	}
	return tw.Flush()
}

func exitStatus(st int) string {
	if st < 0 {
		return ""
	}
	return fmt.Sprintf(" with status %d", st)
}

// printSummary prints s as a table, one "Key:" row per value; a list
// value's further rows leave the key column blank.
func printSummary(w io.Writer, s registry.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	rows := func(k string, vs []string) {
		if len(vs) == 0 {
			row(k, "-")
			return
		}
		for i, v := range vs {
			if i == 0 {
				row(k, v)
			} else {
				fmt.Fprintf(tw, "\t%s\n", v)
			}
		}
	}
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
	rows("Env", s.Env)
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		row("Label", k+"="+s.Labels[k])
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
