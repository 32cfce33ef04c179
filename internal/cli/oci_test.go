package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	tbregistry "github.com/man8s/mbctl/internal/testbed/registry"
)

// ociTestEnv and ociTestLabels are the environment and labels of the image
// ociTestImage pushes: enough labels that map order cannot pass for sorted.
var ociTestEnv = []string{ociimage.DefaultPath, "APP_MODE=prod", "APP_PORT=8080"}

func ociTestLabels() map[string]string {
	l := map[string]string{}
	for _, k := range []string{"zeta", "alpha", "org.opencontainers.image.title", "mid", "beta", "omega", "gamma", "delta", "kappa", "epsilon", "lambda", "iota"} {
		l[k] = "v-" + k
	}
	return l
}

// ociTestImage starts a registry on loopback and pushes an app image with
// two volumes (content owned by uid 1000), three env entries and a dozen
// labels. It returns the image's reference.
func ociTestImage(t *testing.T) string {
	t.Helper()
	testbed.RequireT(t, "docker-registry")
	reg := tbregistry.StartT(t, tbregistry.Options{})
	base, err := ociimage.Layer(
		ociimage.File("bin/app", []byte("#!/bin/sh\n"), 0o755),
		ociimage.Entry{Path: "var/lib/app/", Type: '5', Mode: 0o750, UID: 1000, GID: 1000},
		ociimage.Entry{Path: "var/lib/app/db", Type: '0', Mode: 0o640, UID: 1000, GID: 1001, Content: []byte("data")},
	)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := ociimage.Layer(ociimage.File("etc/app/app.conf", []byte("port=8080\n"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(ociimage.AppConfig{
		Entrypoint: []string{"/bin/app"}, Cmd: []string{"--name", "a b"},
		Env: ociTestEnv, StopSignal: "SIGQUIT", Volumes: []string{"/var/lib/app", "/etc/app"},
		ExposedPorts: []string{"8080/tcp"}, Labels: ociTestLabels(),
	}, base, conf)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr() + "/test/app:1"
	if _, err := ociimage.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// ociTestConfig is the default configuration with every path in a temp
// dir, a fixed Yggdrasil subnet and no Yggdrasil admin socket, changed by
// edits.
func ociTestConfig(t *testing.T, edits ...func(*config.Config)) func() (config.Config, config.Origin, error) {
	t.Helper()
	root := t.TempDir()
	c := config.Default()
	c.Paths = config.Paths{}
	for _, d := range []struct {
		p    *string
		name string
	}{
		{&c.Paths.Machines, "machines"}, {&c.Paths.Configs, "configs"}, {&c.Paths.Storage, "storage"},
		{&c.Paths.Nspawn, "nspawn"}, {&c.Paths.Machinectl, "machinectl"}, {&c.Paths.Cache, "cache"},
		{&c.Paths.Scratch, "scratch"}, {&c.Paths.Networkd, "networkd"}, {&c.Paths.Sysctl, "sysctl"},
	} {
		*d.p = filepath.Join(root, d.name)
	}
	c.Network.YggPrefix = "300:2e98:a4b0:1789::/64"
	c.Network.YggAdmin = "unix://" + filepath.Join(root, "absent.sock")
	for _, e := range edits {
		e(&c)
	}
	return func() (config.Config, config.Origin, error) { return c, config.Origin{}, nil }
}

func TestNewCmdOCI(t *testing.T) {
	ignore := cmpopts.IgnoreFields
	for _, tt := range []struct {
		name string
		cmd  func(f *Factory, got *any) *cobra.Command
		args []string
		want any
		opt  cmp.Option
	}{
		{"download", func(f *Factory, got *any) *cobra.Command {
			return NewCmdOCIDownload(f, func(_ context.Context, o *OCIDownloadOptions) error { *got = o; return nil })
		}, []string{"registry:2", "./rootfs"}, &OCIDownloadOptions{Image: "registry:2", Path: "./rootfs"},
			ignore(OCIDownloadOptions{}, "IO", "Config", "Log", "Getenv")},
		{"download all flags", func(f *Factory, got *any) *cobra.Command {
			return NewCmdOCIDownload(f, func(_ context.Context, o *OCIDownloadOptions) error { *got = o; return nil })
		}, []string{"--platform", "linux/arm64", "-q", "--json", "debian:bookworm", "/var/tmp/debian"},
			&OCIDownloadOptions{Image: "debian:bookworm", Path: "/var/tmp/debian", Platform: "linux/arm64", Quiet: true, JSON: true},
			ignore(OCIDownloadOptions{}, "IO", "Config", "Log", "Getenv")},
		{"inspect", func(f *Factory, got *any) *cobra.Command {
			return NewCmdOCIInspect(f, func(_ context.Context, o *OCIInspectOptions) error { *got = o; return nil })
		}, []string{"--json", "nginx:1.27", "--platform", "linux/amd64"},
			&OCIInspectOptions{Image: "nginx:1.27", Platform: "linux/amd64", JSON: true, ProbeTimeout: 10 * time.Second},
			ignore(OCIInspectOptions{}, "IO", "Config", "Log", "Getenv", "RunProbe")},
		{"inspect --probe", func(f *Factory, got *any) *cobra.Command {
			return NewCmdOCIInspect(f, func(_ context.Context, o *OCIInspectOptions) error { *got = o; return nil })
		}, []string{"--probe", "--probe-timeout", "2500ms", "nginx:1.27"},
			&OCIInspectOptions{Image: "nginx:1.27", Probe: true, ProbeTimeout: 2500 * time.Millisecond},
			ignore(OCIInspectOptions{}, "IO", "Config", "Log", "Getenv", "RunProbe")},
		{"man8init", func(f *Factory, got *any) *cobra.Command {
			return NewCmdOCIMan8init(f, func(_ context.Context, o *OCIMan8initOptions) error { *got = o; return nil })
		}, []string{"./rootfs", "--json"}, &OCIMan8initOptions{Rootfs: "./rootfs", JSON: true},
			ignore(OCIMan8initOptions{}, "IO", "Config", "Log", "Getenv")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			cmd := tt.cmd(testFactory(t), &got)
			cmd.SetArgs(tt.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, tt.opt); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// summaryTestImage is the Summary the printSummary tests print.
func summaryTestImage() registry.Summary {
	return registry.Summary{
		Reference: "docker.io/library/app:1", Digest: "sha256:abc", Platform: "linux/amd64",
		Entrypoint: []string{"/bin/app"}, Cmd: []string{"--name", "a b"},
		Env:       []string{"PATH=/bin", "A=1", "B=two words"},
		Layers:    []registry.LayerSummary{{Digest: "sha256:l1", Size: 2048, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}},
		TotalSize: 2048,
	}
}

func printSummaryT(t *testing.T, s registry.Summary) string {
	t.Helper()
	var b strings.Builder
	if err := printSummary(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Bug: every Env row after the first was labelled ":"; they have a blank
// key column now.
func TestPrintSummaryEnvRows(t *testing.T) {
	want := `Reference:      docker.io/library/app:1
Digest:         sha256:abc
Platform:       linux/amd64
Entrypoint:     ["/bin/app"]
Cmd:            ["--name" "a b"]
Working dir:    -
User:           -
Stop signal:    -
Volumes:        -
Exposed ports:  -
Env:            PATH=/bin
                A=1
                B=two words
Layers:         1, 2.0 KiB
  1             sha256:l1  2.0 KiB  application/vnd.oci.image.layer.v1.tar+gzip
`
	if diff := cmp.Diff(want, printSummaryT(t, summaryTestImage())); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	// No environment at all is a dash, as for the other lists.
	s := summaryTestImage()
	s.Env = nil
	if got := printSummaryT(t, s); !strings.Contains(got, "\nEnv:            -\nLayers:") {
		t.Errorf("summary without env:\n%s", got)
	}
}

// Bug: labels came in Go map order, different from run to run; they are
// sorted by key now.
func TestPrintSummaryLabelsSorted(t *testing.T) {
	s := summaryTestImage()
	s.Labels = ociTestLabels()
	want := `
Label:          alpha=v-alpha
Label:          beta=v-beta
Label:          delta=v-delta
Label:          epsilon=v-epsilon
Label:          gamma=v-gamma
Label:          iota=v-iota
Label:          kappa=v-kappa
Label:          lambda=v-lambda
Label:          mid=v-mid
Label:          omega=v-omega
Label:          org.opencontainers.image.title=v-org.opencontainers.image.title
Label:          zeta=v-zeta
Layers:`
	// Map order changes from one range to the next: print several times.
	for range 5 {
		if got := printSummaryT(t, s); !strings.Contains(got, want) {
			t.Fatalf("labels not sorted:\n%s", got)
		}
	}
}

func TestOCIInspectRun(t *testing.T) {
	ref := ociTestImage(t)
	conf := ociTestConfig(t)
	run := func(o OCIInspectOptions) (string, string, error) {
		ios, _, out, errOut := iostreams.Test()
		o.IO, o.Config, o.Log = ios, conf, slog.New(slog.DiscardHandler)
		err := ociInspectRun(t.Context(), &o)
		return out.String(), errOut.String(), err
	}
	out, _, err := run(OCIInspectOptions{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Reference:      " + ref + "\n",
		"Entrypoint:     [\"/bin/app\"]\n",
		"Volumes:        /etc/app, /var/lib/app\n",
		"Exposed ports:  8080/tcp\n",
		"Env:            " + ociimage.DefaultPath + "\n                APP_MODE=prod\n                APP_PORT=8080\n",
		"Label:          alpha=v-alpha\nLabel:          beta=v-beta\nLabel:          delta=v-delta\n",
		"Layers:         2, ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\n:") {
		t.Errorf("a row without its key:\n%s", out)
	}

	out, _, err = run(OCIInspectOptions{Image: ref, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var s registry.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if s.Reference != ref || len(s.Layers) != 2 || !cmp.Equal(s.Env, ociTestEnv) || !cmp.Equal(s.Labels, ociTestLabels()) {
		t.Errorf("inspect --json: %+v", s)
	}

	_, _, err = run(OCIInspectOptions{Image: ref, Platform: "linux/amd64/v8/x"})
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--platform") {
		t.Errorf("bad --platform: %v, want a usage error naming --platform", err)
	}
	if _, _, err = run(OCIInspectOptions{Image: "http://x/y"}); err == nil || !strings.Contains(err.Error(), "URL scheme") {
		t.Errorf("bad reference: %v", err)
	}
}

func TestOCIDownloadRun(t *testing.T) {
	ref := ociTestImage(t)
	conf := ociTestConfig(t)
	dir := t.TempDir()
	run := func(o OCIDownloadOptions) (string, string, error) {
		ios, _, out, errOut := iostreams.Test()
		ios.SetStderrTTY(true) // --json never draws bars, even on a terminal
		o.IO, o.Config, o.Log = ios, conf, slog.New(slog.DiscardHandler)
		err := ociDownloadRun(t.Context(), &o)
		return out.String(), errOut.String(), err
	}

	// Cold, with --json: one JSON object on stdout, progress lines on stderr.
	out, stderr, err := run(OCIDownloadOptions{Image: ref, Path: filepath.Join(dir, "cold"), JSON: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var got ociDownloadReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON object (%v):\n%s", err, out)
	}
	want := ociDownloadReport{
		Image:    imageReport{Ref: ref, Resolved: ref, Platform: "linux/" + runtime.GOARCH},
		Path:     filepath.Join(dir, "cold"),
		Layers:   layersReport{Total: 2, Downloaded: 2, Cached: 0},
		Unpacked: got.Unpacked, // checked below
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(imageReport{}, "Digest", "Source"),
		cmpopts.IgnoreFields(layersReport{}, "DownloadedBytes"), cmpopts.IgnoreFields(ociDownloadReport{}, "Seconds")); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.Image.Digest, "sha256:") || got.Image.Source == "" || got.Layers.DownloadedBytes <= 0 || got.Unpacked.Files != 3 || got.Unpacked.Bytes != int64(len("#!/bin/sh\ndataport=8080\n")) || got.Seconds < 0 {
		t.Errorf("report %+v", got)
	}
	if !strings.Contains(stderr, "layer 1/2 ") || strings.Contains(stderr, "\r") || strings.Contains(stderr, "unpacked 2 layers") {
		t.Errorf("stderr with --json: want progress lines, no bars and no summary:\n%q", stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cold/etc/app/app.conf")); err != nil || string(b) != "port=8080\n" {
		t.Errorf("unpacked file: %q %v", b, err)
	}
	// The tree is the image's, exactly: the image has no /usr, so neither
	// does the download (only pull and man8init add one, for nspawn).
	if _, err := os.Lstat(filepath.Join(dir, "cold/usr")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("download made /usr (%v); the image has none", err)
	}

	// Warm, --json --quiet: everything from the cache, nothing on stderr.
	out, stderr, err = run(OCIDownloadOptions{Image: ref, Path: filepath.Join(dir, "warm"), JSON: true, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	var warm ociDownloadReport
	if err := json.Unmarshal([]byte(out), &warm); err != nil {
		t.Fatal(err)
	}
	if warm.Layers != (layersReport{Total: 2, Cached: 2}) || warm.Image.Digest != got.Image.Digest || stderr != "" {
		t.Errorf("warm --json --quiet: %+v, stderr %q", warm, stderr)
	}

	// Without --json: the reference on stdout, the summary on stderr.
	out, stderr, err = run(OCIDownloadOptions{Image: ref, Path: filepath.Join(dir, "human"), Quiet: true})
	if err != nil || out != ref+"@"+got.Image.Digest+"\n" || stderr != "" {
		t.Errorf("--quiet: %v, stdout %q, stderr %q", err, out, stderr)
	}

	out, stderr, err = run(OCIDownloadOptions{Image: ref, Path: filepath.Join(dir, "summary")})
	if err != nil || out != ref+"@"+got.Image.Digest+"\n" ||
		!strings.Contains(stderr, "unpacked 2 layers (0 downloaded, 0 B; 2 from the cache): 4 entries, 24 B, in ") {
		t.Errorf("without --quiet: %v, stdout %q, stderr %q", err, out, stderr)
	}

	// The path exists: refused, naming what to do.
	_, _, err = run(OCIDownloadOptions{Image: ref, Path: filepath.Join(dir, "cold"), JSON: true})
	if err == nil || !strings.Contains(err.Error(), "already exists: choose a new path") {
		t.Errorf("download over an existing dir: %v", err)
	}
}

func TestOCIMan8initRun(t *testing.T) {
	busybox := ociimage.StaticBusyboxT(t)
	rootfs := t.TempDir()
	ios, _, out, errOut := iostreams.Test()
	opts := &OCIMan8initOptions{
		IO: ios, Log: slog.New(slog.DiscardHandler),
		Config: func() (config.Config, config.Origin, error) {
			c := config.Default()
			c.Machines.Busybox = ""
			c.Machines.Init = "/nonexistent/man8s-init"
			return c, config.Origin{}, nil
		},
		Getenv: func(k string) string { return map[string]string{envInit: busybox}[k] },
		Rootfs: rootfs, JSON: true,
	}
	// A busybox on PATH is used when machines.busybox is unset; make sure
	// there is none, so that the notice path is taken.
	t.Setenv("PATH", t.TempDir())
	if err := ociMan8initRun(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	var got man8initReport
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := man8initReport{Rootfs: rootfs, Init: "/man8s-init/man8s-init", InitSource: busybox, InitFrom: "$" + envInit, MadeUsr: true}
	if got != want {
		t.Errorf("JSON = %+v, want %+v", got, want)
	}
	if errOut.Len() != 0 {
		t.Errorf("--json printed notices %q", errOut)
	}

	// Human output: without a busybox, a notice on stderr.
	out.Reset()
	opts.JSON = false
	if err := ociMan8initRun(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("installed /man8s-init/man8s-init from %s ($%s)\n", busybox, envInit); out.String() != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if !strings.Contains(errOut.String(), "no static busybox found") {
		t.Errorf("stderr %q, want the missing busybox notice", errOut)
	}
}

// oci inspect --probe unpacks the image into the scratch dir, gives the
// probe its rootfs and the machine's environment, prints what it found
// and the init mode auto would choose, and leaves nothing in the scratch
// dir.
func TestOCIInspectProbe(t *testing.T) {
	ref := ociTestImage(t)
	busybox := ociimage.StaticBusyboxT(t)
	var scratch string
	conf := ociTestConfig(t, func(c *config.Config) { c.Machines.Init = busybox; scratch = c.Paths.Scratch })
	var in probe.Input
	var pc probe.Config
	fake := func(_ context.Context, i probe.Input, c probe.Config) (*probe.Findings, error) {
		in, pc = i, c
		if _, err := os.Stat(filepath.Join(i.Rootfs, "etc/app/app.conf")); err != nil {
			t.Errorf("the probe's rootfs is not the unpacked image: %v", err)
		}
		return &probe.Findings{StopSignal: i.StopSignal, Caught: 1<<(syscall.SIGINT-1) | 1<<(syscall.SIGCHLD-1), Ignored: 1 << (syscall.SIGQUIT - 1),
			Reap:   probe.Reap{Tested: true, Reaped: true, After: 2 * time.Millisecond},
			Stop:   probe.Stop{Sent: true, Signal: i.StopSignal, After: 3 * time.Second, Status: -1},
			Output: "man8s-init: app: exec\n", Took: 4200 * time.Millisecond}, nil
	}
	run := func(o OCIInspectOptions) (string, string, error) {
		ios, _, out, errOut := iostreams.Test()
		o.IO, o.Config, o.Log, o.RunProbe, o.Probe = ios, conf, slog.New(slog.DiscardHandler), fake, true
		err := ociInspectRun(t.Context(), &o)
		return out.String(), errOut.String(), err
	}
	out, _, err := run(OCIInspectOptions{Image: ref, ProbeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if in.StopSignal != syscall.SIGQUIT || in.Journal == nil || in.Scratch != scratch || pc.Timeout != 2*time.Second || pc.Init.Init != busybox {
		t.Errorf("probe input %+v, config %+v", in, pc)
	}
	if !strings.Contains(string(in.Env), "MAN8S_INIT_MODE=exec-pid1\n") {
		t.Errorf("probe env:\n%s", in.Env)
	}
	for _, want := range []string{
		"Reference:  ", // the summary first
		"Probe (the entrypoint as PID 1, 4.2s):\n",
		"Caught signals:   SIGINT, SIGCHLD\n",
		"Ignored signals:  SIGQUIT\n",
		"Blocked signals:  -\n",
		"Reaps:            yes: an adopted child was reaped 2ms after it exited\n",
		"Stop (SIGQUIT):   did not exit within 3000ms of SIGQUIT\n",
		"As PID 1:         no: it does not handle SIGTERM or SIGQUIT, its stop signal: as PID 1 the kernel drops it\n",
		"Init:             none (entrypoint \"/bin/app\" is no known init)\n",
		"Auto mode:        supervise: auto: no init detected, man8s-init supervises the app\n",
		"Warning:          the app ignores SIGQUIT, its stop signal: a stop will kill it after MAN8S_STOP_TIMEOUT",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect --probe output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(OCIInspectOptions{Image: ref, JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Reference string          `json:"reference"`
		Probe     json.RawMessage `json:"probe"`
		Init      struct {
			Detected, AutoMode string
		} `json:"init"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	var pr struct {
		StopSignal string   `json:"stop_signal"`
		Caught     []string `json:"caught"`
		Ignored    []string `json:"ignored"`
		Blocked    []string `json:"blocked"`
		Reaps      *bool    `json:"reaps"`
		Stop       struct {
			Sent, Exited bool
			MS           int64 `json:"ms"`
			Status       *int  `json:"status"`
		} `json:"stop"`
		PID1 string `json:"pid1"`
	}
	if err := json.Unmarshal(rep.Probe, &pr); err != nil {
		t.Fatal(err)
	}
	if rep.Reference != ref || pr.StopSignal != "SIGQUIT" || !slices.Equal(pr.Caught, []string{"SIGINT", "SIGCHLD"}) || pr.Blocked == nil ||
		pr.Reaps == nil || !*pr.Reaps || !pr.Stop.Sent || pr.Stop.Exited || pr.Stop.MS != 3000 || pr.Stop.Status != nil || pr.PID1 != "no" {
		t.Errorf("inspect --probe --json:\n%s", out)
	}
	if !strings.Contains(out, `"auto_mode": "supervise"`) {
		t.Errorf("no auto mode in:\n%s", out)
	}
	// Nothing is left: no unpacked image, no journal.
	ents, _ := os.ReadDir(scratch)
	for _, e := range ents {
		if e.Name() != "journals" {
			t.Errorf("left in the scratch dir: %s", e.Name())
		}
	}
	if j, _ := os.ReadDir(filepath.Join(scratch, "journals")); len(j) > 0 {
		t.Errorf("journals left: %v", j)
	}

	// A probe that fails fails the command, and still leaves nothing.
	fake = func(context.Context, probe.Input, probe.Config) (*probe.Findings, error) {
		return nil, fmt.Errorf("probing: %w after 2s", probe.ErrTimeout)
	}
	if _, _, err := run(OCIInspectOptions{Image: ref}); err == nil || !strings.Contains(err.Error(), "probing "+ref+": probing: the probe timed out after 2s") {
		t.Errorf("failed probe: %v", err)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 1 {
		t.Errorf("left in the scratch dir after a failed probe: %v", ents)
	}
}
