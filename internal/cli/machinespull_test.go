package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

func TestNewCmdMachinesPull(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want MachinesPullOptions
	}{
		{"defaults", []string{"registry:2", "reg"}, MachinesPullOptions{Image: "registry:2", Name: "reg", InitMode: "auto"}},
		{"every flag", []string{
			"--template", "netns-init", "--volume", "/data=data", "--volume", "/etc/app=/srv/app", "--init-mode", "exec-pid1",
			"--platform", "linux/arm64", "-y", "-q", "--json", "--env", "A=1", "-e", "B=x=y z", "--env-file", "a.env", "--env-file", "b.env",
			"--no-probe", "nginx:1.27", "web",
		}, MachinesPullOptions{
			Image: "nginx:1.27", Name: "web", Template: "netns-init", Volumes: []string{"/data=data", "/etc/app=/srv/app"},
			InitMode: "exec-pid1", NoProbe: true, Platform: "linux/arm64", Yes: true, Quiet: true, JSON: true,
			Env: []string{"A=1", "B=x=y z"}, EnvFiles: []string{"a.env", "b.env"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got *MachinesPullOptions
			cmd := NewCmdMachinesPull(testFactory(t), func(_ context.Context, o *MachinesPullOptions) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(MachinesPullOptions{}, "IO", "Config", "Log", "Getenv", "Ask", "RunProbe", "IPv6Uplink")); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
	cmd := NewCmdMachinesPull(testFactory(t), func(context.Context, *MachinesPullOptions) error { return nil })
	cmd.SetArgs([]string{"nginx:1.27"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	var ue *usageError
	if err := cmd.Execute(); !errors.As(err, &ue) || !strings.Contains(err.Error(), "takes 2 arguments: IMAGE NAME") {
		t.Errorf("one argument: %v, want a usage error naming IMAGE NAME", err)
	}
}

// pullOptsT returns options on fake streams with the configuration conf.
func pullOptsT(conf func() (config.Config, config.Origin, error), o MachinesPullOptions) (*MachinesPullOptions, *strings.Builder, *strings.Builder) {
	ios, _, _, _ := iostreams.Test()
	out, errOut := &strings.Builder{}, &strings.Builder{}
	ios.Out, ios.ErrOut = out, errOut
	o.IO, o.Config, o.Log = ios, conf, slog.New(slog.DiscardHandler)
	if o.InitMode == "" {
		o.InitMode = "auto"
	}
	return &o, out, errOut
}

// scriptedAsk answers the questions with answers in turn, and fails the
// test when asked more.
func scriptedAsk(t *testing.T, answers ...string) askFunc {
	return func(_ context.Context, q string) (string, error) {
		if len(answers) == 0 {
			t.Errorf("unexpected question %q", q)
			return "", errNoAnswer
		}
		a := answers[0]
		answers = answers[1:]
		return a, nil
	}
}

// Refusals that come before any download: the image is never fetched
// (its registry does not exist).
func TestMachinesPullRunRefuses(t *testing.T) {
	conf := ociTestConfig(t)
	cfg, _, _ := conf()
	taken := ociTestConfig(t)
	takenCfg, _, _ := taken()
	if err := os.MkdirAll(filepath.Join(takenCfg.Paths.Configs, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	existing := t.TempDir()
	custom := filepath.Join(t.TempDir(), "a")
	const noImage = "127.0.0.1:1/none/app:1"
	for _, tt := range []struct {
		name  string
		conf  func() (config.Config, config.Origin, error)
		opts  MachinesPullOptions
		usage bool
		want  string
	}{
		{"invalid name", conf, MachinesPullOptions{Name: "a b"}, false, `invalid machine name "a b"`},
		{"unknown template", conf, MachinesPullOptions{Name: "app", Template: "nope"}, true, `--template: unknown template "nope"`},
		{"bad configured template", ociTestConfig(t, func(c *config.Config) { c.Machines.DefaultTemplate = "nope" }),
			MachinesPullOptions{Name: "app"}, false, "machines.default_template in the configuration"},
		{"macvlan without uplink", conf, MachinesPullOptions{Name: "app", Template: "macvlan"}, true, "pass --uplink IFACE or set network.uplink in"},
		{"bad uplink", conf, MachinesPullOptions{Name: "app", Template: "macvlan", Uplink: "eth 0"}, true, `--uplink: interface name "eth 0"`},
		{"uplink without macvlan", conf, MachinesPullOptions{Name: "app", Uplink: "eth0"}, true, "--uplink is for --template macvlan only"},
		{"host_network needs no yggdrasil", ociTestConfig(t, func(c *config.Config) { c.Network.YggPrefix = ""; c.Machines.Init = "/nonexistent/man8s-init" }),
			MachinesPullOptions{Name: "app", Template: "host_network"}, false, "/nonexistent/man8s-init"},
		{"unknown init mode", conf, MachinesPullOptions{Name: "app", InitMode: "pid3"}, true, "--init-mode"},
		{"bad volume", conf, MachinesPullOptions{Name: "app", Volumes: []string{"/data"}}, true, `--volume "/data": want PATH=config`},
		{"volume twice", conf, MachinesPullOptions{Name: "app", Volumes: []string{"/data=data", "/data/=skip"}}, true, "--volume /data given twice"},
		{"custom dir exists", conf, MachinesPullOptions{Name: "app", Volumes: []string{"/data=" + existing}}, false, "--volume /data=" + existing + ": " + existing + " already exists"},
		{"custom dir in the machine", conf, MachinesPullOptions{Name: "app", Volumes: []string{"/data=" + filepath.Join(cfg.Paths.Storage, "app/x")}}, false, "overlaps the machine's"},
		{"custom dirs overlap", conf, MachinesPullOptions{Name: "app", Volumes: []string{"/a=" + custom, "/b=" + custom + "/b"}}, false,
			"--volume /b=" + custom + "/b: " + custom + "/b overlaps " + custom + ", the dir of volume /a"},
		{"custom dir twice", conf, MachinesPullOptions{Name: "app", Volumes: []string{"/a=" + custom, "/b=" + custom + "/"}}, false,
			custom + " is already the dir of volume /a"},
		{"machine exists", taken, MachinesPullOptions{Name: "app"}, false, filepath.Join(takenCfg.Paths.Configs, "app")},
		{"no yggdrasil subnet", ociTestConfig(t, func(c *config.Config) { c.Network.YggPrefix = "" }), MachinesPullOptions{Name: "app"}, false,
			"machine app needs this host's Yggdrasil subnet"},
		{"no man8s-init", ociTestConfig(t, func(c *config.Config) { c.Machines.Init = "/nonexistent/man8s-init" }), MachinesPullOptions{Name: "app"}, false,
			"/nonexistent/man8s-init"},
		{"bad --env", conf, MachinesPullOptions{Name: "app", Env: []string{"=s3cret"}}, true, `--env "=…": the key before '=' is empty`},
		{"mbctl's key in --env", conf, MachinesPullOptions{Name: "app", Env: []string{"MAN8S_CONTAINER_NAME=x"}}, true, "MAN8S_CONTAINER_NAME is written by mbctl"},
		{"bad --env-file", conf, MachinesPullOptions{Name: "app", EnvFiles: []string{envFileT(t, "export PASSWORD=s3cret\n")}}, false,
			`line 1: defines a variable named "export PASSWORD"`},
		{"missing --env-file", conf, MachinesPullOptions{Name: "app", EnvFiles: []string{filepath.Join(existing, "absent.env")}}, false,
			"--env-file: reading env file: open " + filepath.Join(existing, "absent.env") + ": no such file"},
		{"bad reference", ociTestConfig(t, func(c *config.Config) { c.Machines.Init = ociimage.StaticBusyboxT(t) }),
			MachinesPullOptions{Name: "app", Image: "https://example.com/app"}, false, "must not start with a URL scheme"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Image == "" {
				tt.opts.Image = noImage
			}
			o, out, _ := pullOptsT(tt.conf, tt.opts)
			err := machinesPullRun(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			var ue *usageError
			if errors.As(err, &ue) != tt.usage {
				t.Errorf("usage error = %v, want %v", !tt.usage, tt.usage)
			}
			if out.Len() > 0 {
				t.Errorf("stdout %q on an error", out)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows a value: %v", err)
			}
		})
	}
	for _, d := range []string{cfg.Paths.Machines, cfg.Paths.Configs, cfg.Paths.Scratch} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused pulls made %s (%v)", d, err)
		}
	}
}

// envFileT writes content to a new env file and returns its path.
func envFileT(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPullEnv(t *testing.T) {
	type kv = machinefiles.EnvVar
	tests := []struct {
		name  string
		files []string // contents of the --env-file files, in order
		flags []string
		want  []kv
		err   string // part of the error, "" for none
		usage bool
	}{
		{name: "nothing", want: nil},
		{name: "flags, literal values", flags: []string{"A=1", `B= "quoted" $HOME 'x' `, "C=", "D=x=y"},
			want: []kv{{Key: "A", Value: "1"}, {Key: "B", Value: ` "quoted" $HOME 'x' `}, {Key: "C", Value: ""}, {Key: "D", Value: "x=y"}}},
		{name: "file then flags, later wins in the first place",
			files: []string{"# db\nA=file\r\nB=file\n\nC=file\n", "B=second\nE=second\n"}, flags: []string{"C=flag", "A=flag", "F=flag"},
			want: []kv{{Key: "A", Value: "flag"}, {Key: "B", Value: "second"}, {Key: "C", Value: "flag"}, {Key: "E", Value: "second"}, {Key: "F", Value: "flag"}}},
		{name: "a key twice in a file", files: []string{"A=1\nA=2\n"}, want: []kv{{Key: "A", Value: "2"}}},
		{name: "users' MAN8S keys", files: []string{"MAN8S_WAIT_FOR=tcp:db:5432\n"}, flags: []string{"MAN8S_STOP_TIMEOUT=60", "MAN8S_STOP_SIGNAL=SIGINT"},
			want: []kv{{Key: "MAN8S_WAIT_FOR", Value: "tcp:db:5432"}, {Key: "MAN8S_STOP_TIMEOUT", Value: "60"}, {Key: "MAN8S_STOP_SIGNAL", Value: "SIGINT"}}},
		{name: "no =", flags: []string{"PASSWORD"}, usage: true, err: `--env "PASSWORD": no '=' (write PASSWORD=VALUE`},
		{name: "empty key", flags: []string{"=s3cret"}, usage: true, err: `--env "=…": the key before '=' is empty`},
		{name: "blank key", flags: []string{" =s3cret"}, usage: true, err: `--env " =…": the key holds a blank`},
		{name: "blank in key", flags: []string{"MY KEY=s3cret"}, usage: true, err: `--env "MY KEY=…": the key holds a blank`},
		{name: "tab in key", flags: []string{"K\t=s3cret"}, usage: true, err: "the key holds a blank"},
		{name: "hash key", flags: []string{"#K=s3cret"}, usage: true, err: `--env "#K=…": key "#K": invalid key: starts with "#"`},
		{name: "newline in value", flags: []string{"K=s3cret\nX=1"}, usage: true, err: `--env "K=…": key "K": invalid value: contains a line break`},
		{name: "mbctl's key", flags: []string{"MAN8S_YGGDRASIL_ADDRESS=::1"}, usage: true, err: `--env "MAN8S_YGGDRASIL_ADDRESS=…": MAN8S_YGGDRASIL_ADDRESS is written by mbctl`},
		{name: "misspelt MAN8S key", flags: []string{"MAN8S_STOP_TIMOUT=5"}, usage: true, err: "not a setting of man8s-init (misspelt?)"},
		{name: "mbctl's key in a file", files: []string{"OK=1\nMAN8S_INIT_MODE=exec-pid1\n"}, err: "MAN8S_INIT_MODE is written by mbctl"},
		{name: "file: no =", files: []string{"A=1\nPASSWORD s3cret\n"}, err: `a line that would not do what it looks like (nothing was created):
  line 2: ignored: the line has no '='`},
		{name: "file: export and quotes", files: []string{"export A=1\nB=2\nC=\"q\"\n"}, err: `2 lines that would not do what they look like (nothing was created):
  line 1: defines a variable named "export A"`},
		{name: "file: blank before key", files: []string{"  A=1\n"}, err: `line 1: ignored: the key "  A" starts with a blank`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files []string
			for _, c := range tt.files {
				files = append(files, envFileT(t, c))
			}
			got, err := pullEnv(files, tt.flags)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("vars (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.err)
			}
			var ue *usageError
			if errors.As(err, &ue) != tt.usage {
				t.Errorf("usage error: %v, want %v", !tt.usage, tt.usage)
			}
			if tt.usage && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the value: %v", err)
			}
			if len(files) > 0 && !strings.Contains(err.Error(), files[len(files)-1]) {
				t.Errorf("the error does not name the file %s: %v", files[len(files)-1], err)
			}
		})
	}
}

func TestChooseVolumes(t *testing.T) {
	p := machine.PathsFor(config.Default().Paths, "app")
	declared := []string{"/etc/app", "/var/lib/app"}
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		tty     bool
		yes     bool
		flags   []string
		ask     []string
		askErr  error
		want    []machine.Volume
		wantErr string
	}{
		{name: "no terminal", flags: []string{"/etc/app=config"},
			wantErr: "the image declares volume /var/lib/app; with no terminal to ask on, answer with --volume PATH=config|data|skip|/host/dir (or --yes for data)"},
		{name: "--yes", yes: true, flags: []string{"/etc/app=skip", "/extra=" + dir + "/extra"}, want: []machine.Volume{
			{Path: "/etc/app", Kind: machine.VolumeSkip}, {Path: "/var/lib/app", Kind: machine.VolumeData},
			{Path: "/extra", Kind: machine.VolumeCustom, Host: dir + "/extra"},
		}},
		{name: "asked", tty: true, flags: []string{"/extra=" + dir + "/x"},
			ask: []string{"7", "config", "3", "relative", dir, dir + "/x", dir + "/x/y", dir + "/new/"},
			want: []machine.Volume{
				{Path: "/etc/app", Kind: machine.VolumeConfig},
				{Path: "/var/lib/app", Kind: machine.VolumeCustom, Host: dir + "/new"},
				{Path: "/extra", Kind: machine.VolumeCustom, Host: dir + "/x"},
			}},
		{name: "stdin ends", tty: true, askErr: errNoAnswer, wantErr: "asking about volumes: no answer: standard input ended (answer them with --volume"},
		{name: "interrupted", tty: true, askErr: context.Canceled, wantErr: "interrupted while asking about volumes: nothing was created"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, _, errOut := pullOptsT(ociTestConfig(t), MachinesPullOptions{Yes: tt.yes})
			o.IO.SetStdinTTY(tt.tty)
			o.Ask = scriptedAsk(t, tt.ask...)
			if tt.askErr != nil {
				o.Ask = func(context.Context, string) (string, error) { return "", tt.askErr }
			}
			answered, order, err := parseVolumeFlags(tt.flags, p, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := chooseVolumes(t.Context(), o, p, declared, answered, order)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
			if tt.name == "asked" {
				for _, want := range []string{
					"The image declares the volume /etc/app. Where should it live?\n",
					"  1) config       /var/lib/man8machine_configs/app/etc/app\n",
					"  Please answer 1, 2, 3 or 4.\n",
					"The image declares the volume /var/lib/app.",
					`  "relative" is not an absolute path` + "\n",
					"  " + dir + " already exists",
					"  " + dir + "/x is already the dir of volume /extra\n",
					"  " + dir + "/x/y overlaps " + dir + "/x, the dir of volume /extra\n",
					"Volume /extra is not declared by the image; mounting it as asked.\n",
				} {
					if !strings.Contains(errOut.String(), want) {
						t.Errorf("stderr lacks %q:\n%s", want, errOut)
					}
				}
			}
		})
	}
}

// A real pull from a registry on loopback, with --json, then one that asks
// on a (fake) terminal and prints the human summary.
func TestMachinesPullRun(t *testing.T) {
	busybox := ociimage.StaticBusyboxT(t)
	ref := ociTestImage(t)
	conf := ociTestConfig(t, func(c *config.Config) { c.Machines.Init, c.Machines.Busybox = busybox, busybox })
	cfg, _, _ := conf()
	custom := filepath.Join(t.TempDir(), "extra")

	// Without a terminal, unanswered volumes are refused before anything
	// is made.
	o, out, _ := pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "app1", Volumes: []string{"/etc/app=config"}})
	if err := machinesPullRun(t.Context(), o); err == nil || !strings.Contains(err.Error(), "volume /var/lib/app; with no terminal to ask on, answer with --volume") {
		t.Errorf("unanswered volume without a terminal: %v", err)
	}
	if _, err := os.Stat(cfg.Paths.Machines); !os.IsNotExist(err) || out.Len() > 0 {
		t.Errorf("a refused pull made %s (%v) or printed %q", cfg.Paths.Machines, err, out)
	}

	// --json, the init from $MBCTL_INIT.
	o, out, errOut := pullOptsT(conf, MachinesPullOptions{
		Image: ref, Name: "app1", JSON: true,
		Volumes:  []string{"/var/lib/app=data", "/etc/app=config", "/srv/extra=" + custom},
		EnvFiles: []string{envFileT(t, "APP_PORT=9090\nDB_PASSWORD=from file\n")},
		Env:      []string{"DB_PASSWORD=p@ss \"w\" $x", "MAN8S_STOP_TIMEOUT=45"},
		Publish:  []string{"8080:80", "5353:53/udp"},
	})
	o.IO.SetStderrTTY(true) // no bars with --json, even on a terminal
	o.Getenv = func(k string) string { return map[string]string{envInit: busybox}[k] }
	if err := machinesPullRun(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var got machinesPullReport
	dec := json.NewDecoder(strings.NewReader(out.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON object (%v):\n%s", err, out)
	}
	p := machine.PathsFor(cfg.Paths, "app1")
	addr, err := yggaddr.Address(netip.MustParsePrefix("300:2e98:a4b0:1789::/64"), "app1")
	if err != nil {
		t.Fatal(err)
	}
	want := machinesPullReport{
		Name: "app1", YggAddress: addr, Template: "network_isolated",
		Image: imageReport{Ref: ref, Resolved: ref, Platform: "linux/" + runtime.GOARCH},
		Init: pulledInitReport{Detected: "none", Mode: "supervise", Installed: "/man8s-init/man8s-init",
			Source: busybox, From: "$" + envInit, Busybox: "/man8s-init/busybox", ShellLink: true, MadeUsr: true},
		Paths: p,
		Volumes: []machine.Volume{
			{Path: "/etc/app", Kind: machine.VolumeConfig, Host: filepath.Join(p.ConfigDir, "etc/app")},
			{Path: "/var/lib/app", Kind: machine.VolumeData, Host: filepath.Join(p.StorageDir, "var/lib/app")},
			{Path: "/srv/extra", Kind: machine.VolumeCustom, Host: custom},
		},
		EnvKeys:   []string{"APP_PORT", "DB_PASSWORD", "MAN8S_STOP_TIMEOUT"},
		Published: []nspawnport.Port{{Protocol: "tcp", Host: 8080, Container: 80}, {Protocol: "udp", Host: 5353, Container: 53}},
		Layers:    layersReport{Total: 2, Downloaded: 2},
		Unpacked:  got.Unpacked,
	}
	if diff := cmp.Diff(want, got,
		cmpopts.IgnoreFields(imageReport{}, "Digest", "Source"),
		cmpopts.IgnoreFields(pulledInitReport{}, "Evidence", "ModeReason"),
		cmpopts.IgnoreFields(layersReport{}, "DownloadedBytes"),
		cmpopts.IgnoreFields(machinesPullReport{}, "Seconds"), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.Image.Digest, "sha256:") || got.Init.Evidence == "" || got.Init.ModeReason == "" || got.Unpacked.Files != 3 {
		t.Errorf("report: %+v", got)
	}
	if !strings.Contains(errOut.String(), "Volume /srv/extra is not declared by the image") || strings.Contains(errOut.String(), "\r") {
		t.Errorf("stderr: want the notice and no bars:\n%q", errOut)
	}
	if strings.Contains(out.String(), "p@ss") || strings.Contains(errOut.String(), "p@ss") {
		t.Errorf("the output shows a value given at pull:\n%s\n%s", out, errOut)
	}
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"APP_PORT": "9090", "APP_MODE": "prod", "DB_PASSWORD": `p@ss "w" $x`, "MAN8S_STOP_TIMEOUT": "45", "MAN8S_STOP_SIGNAL": "SIGQUIT"} {
		if got, _ := env.Get(k); got != v {
			t.Errorf("man8env.env %s = %q, want %q", k, got, v)
		}
	}
	for _, f := range []string{p.Settings, p.Env, p.SettingsLink, p.ImageLink, filepath.Join(p.Rootfs, "man8s-init/man8s-init"),
		filepath.Join(p.StorageDir, "var/lib/app/db"), filepath.Join(p.ConfigDir, "etc/app/app.conf")} {
		if _, err := os.Lstat(f); err != nil {
			t.Errorf("after the pull: %v", err)
		}
	}
	// The published ports are in the settings, not in the merge base: they
	// are the user's, and upgrades keep them.
	if s, _ := os.ReadFile(p.Settings); !strings.Contains(string(s), "Bridge=srvgrp0\n# Published on the host") || !strings.Contains(string(s), "\nPort=tcp:8080:80\nPort=udp:5353:53\n") {
		t.Errorf("settings lack the published ports:\n%s", s)
	}
	if s, err := os.ReadFile(filepath.Join(provision.StateDir(p), "base.nspawn")); err != nil || strings.Contains(string(s), "Port=") {
		t.Errorf("merge base (%v):\n%s", err, s)
	}
	// Another machine cannot take a host port app1 publishes.
	o, _, _ = pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "app3", Yes: true, Publish: []string{"8080:81"}})
	if err := machinesPullRun(t.Context(), o); err == nil || !strings.Contains(err.Error(), "host port 8080/tcp is published by machine app1 already") {
		t.Errorf("pull with a taken host port: %v", err)
	}
	if _, err := os.Stat(machine.PathsFor(cfg.Paths, "app3").ConfigDir); !os.IsNotExist(err) {
		t.Errorf("a refused pull made app3: %v", err)
	}

	// Asked on the terminal; the human summary; the layers from the cache.
	o, out, errOut = pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "app2", Quiet: true, Env: []string{"B=2", "A=1"}})
	o.IO.SetStdinTTY(true)
	o.Ask = scriptedAsk(t, "skip", "")
	if err := machinesPullRun(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	p = machine.PathsFor(cfg.Paths, "app2")
	for _, want := range []string{
		"Init: detected none (", "; mode supervise: ",
		"\nMachine app2 created from " + ref + "@" + got.Image.Digest + " in ",
		"  root file system   " + p.Rootfs + "\n",
		"  environment        " + p.Env + "\n    given at pull    B, A\n",
		"  volume /etc/app  not mounted\n",
		"  volume /var/lib/app  " + filepath.Join(p.StorageDir, "var/lib/app") + " (data)\n",
		"The image has no /usr: made an empty one, without which systemd-nspawn refuses the tree.\n",
		"Start it with 'mbctl machines start app2'",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut.String(), "The image declares the volume /etc/app.") || strings.Contains(errOut.String(), "layer 1/2") {
		t.Errorf("stderr with --quiet: want the questions and no progress:\n%s", errOut)
	}

	// The same name again: refused, naming the machine's files.
	o, _, _ = pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "app2", Yes: true, JSON: true})
	if err := machinesPullRun(t.Context(), o); err == nil || !strings.Contains(err.Error(), p.Rootfs) {
		t.Errorf("second pull of app2: %v", err)
	}
}

// On a host without IPv6 uplink the pulled machine gets MAN8S_IPV6=optional
// with a comment saying why, unless --env gave MAN8S_IPV6; with an uplink
// (or network.ipv6_uplink = yes) it gets nothing.
func TestMachinesPullIPv6Uplink(t *testing.T) {
	busybox := ociimage.StaticBusyboxT(t)
	ref := ociTestImage(t)
	vols := []string{"/var/lib/app=data", "/etc/app=config"}
	tests := []struct {
		name     string
		mode     string // network.ipv6_uplink
		present  bool   // what the probe finds
		probeErr error
		env      []string
		template string
		want     string // MAN8S_IPV6 in man8env.env
		wantNote bool
	}{
		{"ipv4-only host", config.IPv6UplinkAuto, false, nil, nil, "", "optional", true},
		{"dual-stack host", config.IPv6UplinkAuto, true, nil, nil, "", "", false},
		{"ipv4-only host, --env says required", config.IPv6UplinkAuto, false, nil, []string{"MAN8S_IPV6=required"}, "", "required", false},
		{"configured no", config.IPv6UplinkNo, true, nil, nil, "", "optional", true},
		{"configured yes", config.IPv6UplinkYes, false, nil, nil, "", "", false},
		{"probe fails", config.IPv6UplinkAuto, false, errors.New("netlink: permission denied"), nil, "", "", false},
		// Only a machine on the bridge takes IPv6 from the host.
		{"host_network on an ipv4-only host", config.IPv6UplinkNo, false, nil, nil, man8env.TemplateHostNetwork, "", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := ociTestConfig(t, func(c *config.Config) {
				c.Machines.Init, c.Machines.Busybox, c.Network.IPv6Uplink = busybox, busybox, tt.mode
			})
			cfg, _, _ := conf()
			name := fmt.Sprintf("v6-%d", i)
			o, out, errOut := pullOptsT(conf, MachinesPullOptions{Image: ref, Name: name, Volumes: vols, Env: tt.env, Template: tt.template, JSON: true, NoProbe: true})
			probed := 0
			o.IPv6Uplink = func(mode, bridge string) (uplink.IPv6, error) {
				probed++
				if bridge != cfg.Network.Bridge {
					t.Errorf("probed for bridge %q", bridge)
				}
				return uplink.Decide(mode, func() (uplink.Uplink, error) {
					if !tt.present {
						return uplink.Uplink{}, tt.probeErr
					}
					return uplink.Uplink{IPv6: &uplink.Route{Link: "eth0"}}, nil
				})
			}
			if err := machinesPullRun(t.Context(), o); err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			envPath := machine.PathsFor(cfg.Paths, name).Env
			f, err := envfile.ReadFile(envPath)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := f.Get(man8env.KeyIPv6); got != tt.want {
				t.Errorf("MAN8S_IPV6 = %q, want %q", got, tt.want)
			}
			text := string(f.Bytes())
			if note := strings.Contains(text, "# The host had no IPv6 uplink at pull ("); note != tt.wantNote {
				t.Errorf("comment present %v, want %v:\n%s", note, tt.wantNote, text)
			}
			if tt.wantNote {
				why := "no IPv6 default route"
				if tt.mode == config.IPv6UplinkNo {
					why = "network.ipv6_uplink = no"
				}
				if !strings.Contains(text, "at pull ("+why+")") || !strings.Contains(errOut.String(), "notice: this host has no IPv6 uplink ("+why+"): machine "+name+" got MAN8S_IPV6=optional") {
					t.Errorf("reason %q missing:\n%s\nstderr: %s", why, text, errOut)
				}
			}
			var rep struct {
				IPv6Optional bool `json:"ipv6_optional"`
			}
			if err := json.Unmarshal([]byte(out.String()), &rep); err != nil || rep.IPv6Optional != tt.wantNote {
				t.Errorf("--json ipv6_optional = %v (%v), want %v", rep.IPv6Optional, err, tt.wantNote)
			}
			if wantProbe := len(tt.env) == 0 && tt.template == ""; (probed == 1) != wantProbe {
				t.Errorf("probed %d times, want a probe: %v", probed, wantProbe)
			}
			if warned := strings.Contains(errOut.String(), "warning: cannot tell whether this host has IPv6"); warned != (tt.probeErr != nil) {
				t.Errorf("warning %v, want %v: %s", warned, tt.probeErr != nil, errOut)
			}
		})
	}
}

// The pull runs the probe (unless --no-probe), shows what it found, warns
// about a stop that will not end the app, and about a probe that failed.
func TestMachinesPullProbe(t *testing.T) {
	busybox := ociimage.StaticBusyboxT(t)
	ref := ociTestImage(t)
	conf := ociTestConfig(t, func(c *config.Config) { c.Machines.Init, c.Machines.Busybox = busybox, busybox })
	vols := []string{"/var/lib/app=data", "/etc/app=config"}
	ignoresQuit := func(_ context.Context, in probe.Input, c probe.Config) (*probe.Findings, error) {
		if c.Init.Init != busybox || in.Journal == nil {
			t.Errorf("probe config %+v, input %+v", c, in)
		}
		return &probe.Findings{StopSignal: in.StopSignal, Ignored: 1 << (syscall.SIGQUIT - 1), Caught: 1 << (syscall.SIGTERM - 1),
			Reap: probe.Reap{Tested: true, Reaped: true}, Stop: probe.Stop{Sent: true, Signal: in.StopSignal, After: 300 * time.Millisecond},
			Output: "env: DB_PASSWORD=s3cr3t\n"}, nil
	}

	o, out, errOut := pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "p1", Volumes: vols})
	o.RunProbe = ignoresQuit
	if err := machinesPullRun(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if want := "warning: the app ignores SIGQUIT, its stop signal: a stop will kill it after MAN8S_STOP_TIMEOUT"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	if want := "Probe: as PID 1 it behaves (it handles SIGTERM and reaps the children it adopts); catches SIGTERM; reaps: yes"; !strings.Contains(out.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, out)
	}

	// Other variables: the findings kept from p1 do not apply.
	o, out, errOut = pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "p2", Volumes: vols, JSON: true, Env: []string{"OTHER=1"}})
	o.RunProbe = func(context.Context, probe.Input, probe.Config) (*probe.Findings, error) {
		return nil, errors.New("probing: idmapping /x: operation not supported")
	}
	if err := machinesPullRun(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if want := "warning: the init probe did not finish, so the init mode follows the entrypoint's name (--no-probe skips the probe): probing: idmapping"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	var rep machinesPullReport
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil || rep.Init.Probe != nil || !strings.Contains(rep.Init.ProbeError, "idmapping") {
		t.Errorf("--json (%v): %+v", err, rep.Init)
	}

	// --json has the findings (kept from p1's pull: same image, same
	// variables), never the app's output (it may show a value given at
	// pull).
	o, out, errOut = pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "p4", Volumes: vols, JSON: true})
	o.RunProbe = ignoresQuit
	if err := machinesPullRun(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	rep = machinesPullReport{}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil || rep.Init.Probe == nil || rep.Init.Probe.PID1 != "yes" || !rep.Init.ProbeKept ||
		!strings.Contains(rep.Init.StopWarning, "ignores SIGQUIT") || strings.Contains(out.String()+errOut.String(), "s3cr3t") {
		t.Errorf("--json (%v):\n%s\n%s", err, out, errOut)
	}

	o, _, errOut = pullOptsT(conf, MachinesPullOptions{Image: ref, Name: "p3", Volumes: vols, NoProbe: true})
	o.RunProbe = func(context.Context, probe.Input, probe.Config) (*probe.Findings, error) {
		t.Error("--no-probe probed")
		return nil, nil
	}
	if err := machinesPullRun(t.Context(), o); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if strings.Contains(errOut.String(), "warning") {
		t.Errorf("--no-probe warns:\n%s", errOut)
	}
}

func TestCommandFlags(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, tt := range []struct {
		ep, cmd  *string
		wantEP   []string
		wantArgs []string
		wantErr  string
	}{
		{nil, nil, nil, nil, ""},
		{nil, s(`volume -dir=/data "-ip=a b"`), nil, []string{"volume", "-dir=/data", "-ip=a b"}, ""},
		{s("/bin/weed"), nil, []string{"/bin/weed"}, nil, ""},
		{s(""), s("serve"), []string{}, []string{"serve"}, ""},
		{nil, s(""), nil, []string{}, ""},
		{s(""), nil, nil, nil, "no command to run"},
		{nil, s("run $HOME"), nil, nil, "--cmd"},
	} {
		ep, args, err := commandFlags(tt.ep, tt.cmd)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("commandFlags(%v, %v) error = %v, want %q", tt.ep, tt.cmd, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(ep, tt.wantEP) || !slices.Equal(args, tt.wantArgs) || (ep == nil) != (tt.wantEP == nil) || (args == nil) != (tt.wantArgs == nil) {
			t.Errorf("commandFlags(%v, %v) = %q, %q, %v; want %q, %q", tt.ep, tt.cmd, ep, args, err, tt.wantEP, tt.wantArgs)
		}
	}
}

// --help lists every template with its line.
func TestMachinesPullHelpListsTemplates(t *testing.T) {
	cmd := NewCmdMachinesPull(testFactory(t), nil)
	usage := cmd.Flags().Lookup("template").Usage
	for _, tmpl := range man8env.Templates() {
		if !strings.Contains(usage, tmpl+" ") || !strings.Contains(usage, man8env.TemplateSummary(tmpl)) || !strings.Contains(cmd.Long, tmpl) {
			t.Errorf("--template's help does not list %s with its summary:\n%s", tmpl, usage)
		}
	}
}

// A host_network machine has no address: --json claims none.
func TestPullReportWithoutAddress(t *testing.T) {
	b, err := json.Marshal(machinesPullReport{Name: "agent", Template: man8env.TemplateHostNetwork})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "ygg_address") {
		t.Errorf("report of a host_network machine: %s", b)
	}
}
