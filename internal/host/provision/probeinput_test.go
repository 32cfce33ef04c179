package provision

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
)

// The detect step gives the probe the staging rootfs and the machine's
// environment in exec-pid1 mode, and uses what it finds: the stop warning
// of an app that ignores its stop signal (the image's SIGQUIT).
func TestCreateProbes(t *testing.T) {
	im := appImage(t)
	o, _ := testOptions(t, im)
	o.Env = []machinefiles.EnvVar{{Key: "APP_MODE", Value: "dev"}, {Key: man8env.KeyWaitFor, Value: "tcp:db:5432"}}
	var got probe.Input
	o.Probe = func(_ context.Context, in probe.Input) (*probe.Findings, error) {
		got = in
		if _, err := os.Stat(in.Rootfs + "/bin/app"); err != nil {
			t.Errorf("the probe's rootfs is not the unpacked image: %v", err)
		}
		return &probe.Findings{StopSignal: in.StopSignal, Ignored: 1 << (syscall.SIGQUIT - 1)}, nil
	}
	res, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got.Journal == nil || got.Scratch != o.Dirs.Scratch || got.WorkingDir != "/" || got.StopSignal != syscall.SIGQUIT {
		t.Errorf("probe input: journal %v, scratch %q, working dir %q, stop signal %v", got.Journal, got.Scratch, got.WorkingDir, got.StopSignal)
	}
	if !slices.Contains(got.Setenv, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") {
		t.Errorf("probe setenv %q lacks the image's PATH", got.Setenv)
	}
	env, err := envfile.Parse(strings.NewReader(string(got.Env)))
	if err != nil {
		t.Fatal(err)
	}
	vars := env.Map()
	for k, want := range map[string]string{
		man8env.KeyInitMode: "exec-pid1", man8env.KeyName: "app1", "APP_MODE": "dev", man8env.KeyStopSignal: "SIGQUIT",
		man8env.KeyWaitFor: "", man8env.KeyCheck: "off", man8env.KeyArgs: "/bin/app --name 'a b'",
	} {
		if v, ok := vars[k]; !ok || v != want {
			t.Errorf("probe env %s=%q (set %v), want %q\n%s", k, v, ok, want, got.Env)
		}
	}
	if res.Probe == nil || res.ProbeErr != nil || res.Mode != imageinit.Supervise {
		t.Errorf("Created: probe %v, err %v, mode %s", res.Probe, res.ProbeErr, res.Mode)
	}
	if !strings.Contains(res.StopWarning, "ignores SIGQUIT, its stop signal") {
		t.Errorf("stop warning %q", res.StopWarning)
	}
	// The machine's own files are a supervised machine's.
	b, err := os.ReadFile(res.Paths.Env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "MAN8S_INIT_MODE=supervise") || !strings.Contains(string(b), "MAN8S_WAIT_FOR=tcp:db:5432") {
		t.Errorf("man8env.env:\n%s", b)
	}
}

// A probe that fails leaves the choice to the name; an interrupted one
// stops the run, which takes everything back.
func TestCreateProbeFails(t *testing.T) {
	im := appImage(t)
	t.Run("failed", func(t *testing.T) {
		o, _ := testOptions(t, im)
		o.Probe = func(context.Context, probe.Input) (*probe.Findings, error) {
			return &probe.Findings{}, errors.New("no idmapped mounts")
		}
		res, err := Create(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Probe != nil || res.ProbeErr == nil || res.Mode != imageinit.Supervise || res.StopWarning != "" {
			t.Errorf("Created: probe %v, err %v, mode %s, warning %q", res.Probe, res.ProbeErr, res.Mode, res.StopWarning)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		o, root := testOptions(t, im)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		o.Probe = func(ctx context.Context, _ probe.Input) (*probe.Findings, error) {
			cancel()
			return nil, ctx.Err()
		}
		if _, err := Create(ctx, o); !errors.Is(err, context.Canceled) {
			t.Fatalf("Create = %v, want context.Canceled", err)
		}
		if _, err := os.Stat(o.Dirs.Machines + "/app1"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the interrupted pull left its rootfs (%v) under %s", err, root)
		}
	})
}

func TestProbeInputPlaceholders(t *testing.T) {
	im := appImage(t)
	in, err := ProbeInput("/rootfs", machinefiles.Params{ImageRef: "x/app:1", ImageDigest: im.Digest.String(), Image: im.Config.Config,
		Env: []machinefiles.EnvVar{{Key: man8env.KeyStopSignal, Value: "SIGINT"}}})
	if err != nil {
		t.Fatal(err)
	}
	if in.Rootfs != "/rootfs" || in.StopSignal != syscall.SIGINT || !strings.Contains(string(in.Env), "MAN8S_CONTAINER_NAME=probe\n") {
		t.Errorf("input %+v\n%s", in, in.Env)
	}
}
