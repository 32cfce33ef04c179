package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
)

// machineDirs returns a configuration whose machine paths are in a temp
// dir, and that dir.
func machineDirs(t *testing.T) (map[string]string, string) {
	t.Helper()
	root := t.TempDir()
	var b strings.Builder
	b.WriteString("[paths]\n")
	for _, k := range []string{"machines", "configs", "storage", "nspawn", "machinectl", "cache", "scratch", "systemd_units"} {
		dir := filepath.Join(root, k)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b.WriteString(k + " = \"" + dir + "\"\n")
	}
	return noConfig(t, b.String()), root
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMachinesListShowRemove(t *testing.T) {
	env, root := machineDirs(t)
	writeTestFile(t, filepath.Join(root, "machines/web/bin/app"), "")
	writeTestFile(t, filepath.Join(root, "configs/web/man8env.env"),
		"MAN8S_OCI_IMAGE_URL=registry.example/web:1\nMAN8S_YGGDRASIL_ADDRESS=300::5\nMAN8S_MBCTL_CREATED_AT=2026-11-28T10:00:00Z\n")
	writeTestFile(t, filepath.Join(root, "configs/web/container.nspawn"), "[Exec]\nParameters=/man8s-init/man8s-init\n")

	code, out, stderr := runCLI(t, env, "machines", "list")
	if code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "stopped (partial)") || !strings.Contains(out, "300::5") {
		t.Errorf("list: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, env, "machines", "list", "--json")
	var infos []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &infos) != nil || len(infos) != 1 || infos[0]["image"] != "registry.example/web:1" {
		t.Errorf("list --json: %d %q", code, out)
	}
	code, out, _ = runCLI(t, env, "machines", "show", "web")
	for _, want := range []string{"State:", "stopped", "Parameters=/man8s-init/man8s-init", "storage dir", "(missing)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show: %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if code, _, stderr = runCLI(t, env, "machines", "show", "nope"); code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("show nope: %d %q", code, stderr)
	}
	// No terminal, no --yes: nothing is deleted.
	code, _, stderr = runCLI(t, env, "machines", "remove", "web")
	if code != 1 || !strings.Contains(stderr, "pass --yes") || !strings.Contains(stderr, "deletes:") {
		t.Errorf("remove without --yes: %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "machines/web")); err != nil {
		t.Fatal("deleted without confirmation")
	}
	code, out, stderr = runCLI(t, env, "machines", "remove", "--yes", "web")
	if code != 0 || !strings.Contains(out, "Removed machine web") || !strings.Contains(stderr, "Already missing:") {
		t.Errorf("remove --yes: %d %q %q", code, out, stderr)
	}
	if code, _, stderr = runCLI(t, env, "machines", "remove", "--yes", "web"); code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("second remove: %d %q", code, stderr)
	}
}

// testMachineDeps returns MachineDeps on fake streams whose machine paths
// are in a temp dir, that dir, and the streams' stdout and stderr.
func testMachineDeps(t *testing.T) (MachineDeps, string, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	root := t.TempDir()
	cfg := config.Default()
	cfg.Paths = config.Paths{}
	for k, p := range map[string]*string{"machines": &cfg.Paths.Machines, "configs": &cfg.Paths.Configs, "storage": &cfg.Paths.Storage,
		"nspawn": &cfg.Paths.Nspawn, "machinectl": &cfg.Paths.Machinectl, "cache": &cfg.Paths.Cache, "scratch": &cfg.Paths.Scratch, "systemd_units": &cfg.Paths.SystemdUnits} {
		*p = filepath.Join(root, k)
		if err := os.MkdirAll(*p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ios, _, out, errOut := iostreams.Test()
	return MachineDeps{IO: ios, Config: func() (config.Config, config.Origin, error) { return cfg, config.Origin{}, nil },
		Log: slog.New(slog.NewTextHandler(errOut, nil)), Prober: noMachinesRun(t)}, root, out, errOut
}

// completeMachine writes a machine web that passes every check, and
// returns its paths.
func completeMachine(t *testing.T, d MachineDeps) machine.Paths {
	t.Helper()
	p, _, err := d.paths("web")
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(p.Rootfs, "usr/bin/app"), "")
	writeTestFile(t, filepath.Join(p.Rootfs, man8env.InitPath), "#!/bin/sh\n")
	if err := os.Chmod(filepath.Join(p.Rootfs, man8env.InitPath), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(p.StorageDir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, p.Settings, "[Exec]\nParameters=/man8s-init/man8s-init\n\n[Files]\nBind="+p.Env+":/man8env.env\nBind="+data+":/data:idmap\nBind=-/gone:/optional\n")
	writeTestFile(t, p.Env, "MAN8S_CONTAINER_NAME=web\nMAN8S_OCI_IMAGE_URL=127.0.0.1:9/web:1\nMAN8S_YGGDRASIL_ADDRESS=300:2e98:a4b0:1789"+strings.TrimPrefix(yggaddr.Suffix("web").String(), ":")+"\nMAN8S_STOP_SIGNAL=SIGQUIT\n")
	for link, target := range map[string]string{p.SettingsLink: p.Settings, p.ImageLink: p.Rootfs} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestNewCmdMachines(t *testing.T) {
	run := func(t *testing.T, cmd *cobra.Command, args ...string) {
		t.Helper()
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	ignore := cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober")
	t.Run("list", func(t *testing.T) {
		var got *MachinesListOptions
		run(t, NewCmdMachinesList(testFactory(t), func(_ context.Context, o *MachinesListOptions) error { got = o; return nil }), "--json")
		if diff := cmp.Diff(&MachinesListOptions{JSON: true}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("show", func(t *testing.T) {
		var got *MachinesShowOptions
		run(t, NewCmdMachinesShow(testFactory(t), func(_ context.Context, o *MachinesShowOptions) error { got = o; return nil }), "web", "--json")
		if diff := cmp.Diff(&MachinesShowOptions{Name: "web", JSON: true}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("check", func(t *testing.T) {
		var got *MachinesCheckOptions
		run(t, NewCmdMachinesCheck(testFactory(t), func(_ context.Context, o *MachinesCheckOptions) error { got = o; return nil }), "--json", "web")
		if diff := cmp.Diff(&MachinesCheckOptions{Name: "web", JSON: true}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("remove", func(t *testing.T) {
		var got *MachinesRemoveOptions
		run(t, NewCmdMachinesRemove(testFactory(t), func(_ context.Context, o *MachinesRemoveOptions) error { got = o; return nil }), "-y", "--keep-data", "web")
		if diff := cmp.Diff(&MachinesRemoveOptions{Name: "web", Yes: true, KeepData: true}, got, ignore, cmpopts.IgnoreFields(MachinesRemoveOptions{}, "Confirm")); diff != "" {
			t.Error(diff)
		}
	})
}

func TestMachinesListRun(t *testing.T) {
	d, _, out, errOut := testMachineDeps(t)
	completeMachine(t, d)
	partial, _, _ := d.paths("half")
	writeTestFile(t, filepath.Join(partial.ConfigDir, machine.EnvFile), "MAN8S_OCI_IMAGE_URL=registry.example/half:1\n")
	if err := machinesListRun(t.Context(), &MachinesListOptions{MachineDeps: d}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"half  stopped (partial)  -       registry.example/half:1", "web   stopped "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if want := "warning: machine half is incomplete (missing: root file system, storage dir, nspawn settings link, machinectl image link): its root file system is gone"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	if strings.Contains(errOut.String(), "machine web") {
		t.Errorf("stderr warns about the complete machine:\n%s", errOut)
	}
}

func TestMachinesShowRunWarnsAboutEnvLines(t *testing.T) {
	d, _, out, errOut := testMachineDeps(t)
	p := completeMachine(t, d)
	writeTestFile(t, p.Env, "MAN8S_CONTAINER_NAME=web\nexport APP_MODE=prod\nPASSWORD=\"secret\"\n")
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil {
		t.Fatal(err)
	}
	var show struct {
		EnvProblems []envfile.Problem `json:"env_problems"`
	}
	if err := json.Unmarshal(out.Bytes(), &show); err != nil {
		t.Fatal(err)
	}
	if len(show.EnvProblems) != 2 || show.EnvProblems[0].Line != 2 || show.EnvProblems[1].Key != "PASSWORD" {
		t.Errorf("env_problems = %+v", show.EnvProblems)
	}
	for _, want := range []string{"warning: " + p.Env + " line 2: defines a variable named \"export APP_MODE\"", p.Env + " line 3:"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestMachinesCheckRun(t *testing.T) {
	tests := []struct {
		name     string
		breakIt  func(t *testing.T, p machine.Paths)
		wantErr  string
		wantRows []string
	}{
		{name: "complete", breakIt: func(*testing.T, machine.Paths) {},
			wantRows: []string{"ok    root file system /usr", "ok    man8s-init", "ok    nspawn settings link", "ok    environment MAN8S_YGGDRASIL_ADDRESS", "warn  nspawn settings dir"}},
		{name: "broken", breakIt: func(t *testing.T, p machine.Paths) {
			for _, path := range []string{filepath.Join(p.Rootfs, "usr"), filepath.Join(p.StorageDir, "data"), p.ImageLink} {
				if err := os.RemoveAll(path); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(filepath.Join(p.Rootfs, man8env.InitPath), 0o644); err != nil {
				t.Fatal(err)
			}
			writeTestFile(t, p.Env, "MAN8S_YGGDRASIL_ADDRESS=300::5\nMAN8S_STOP_SIGNAL=SIGNOPE\nMAN8S_STOP_TIMEOUT=soon\nexport X=1\nMAN8S_AUTO_UPDATE=yes\nMAN8S_DRAIN_TIMEOUT=later\n")
		}, wantErr: "machine web: 8 of",
			wantRows: []string{
				"fail  root file system /usr",
				"fix: systemd-nspawn refuses a tree without /usr: 'mbctl oci man8init ",
				"fail  man8s-init", "not an executable file",
				"fail  machinectl image link", "missing",
				"fail  bind /data", "bind source missing",
				"fail  environment MAN8S_STOP_SIGNAL",
				"fail  environment MAN8S_STOP_TIMEOUT",
				"fail  environment MAN8S_DRAIN_TIMEOUT",
				"fail  environment MAN8S_YGGDRASIL_ADDRESS", "fix: set it to the output of 'mbctl address get web'",
				"warn  environment", "line 4: defines a variable named \"export X\"",
				"warn  environment MAN8S_AUTO_UPDATE", "MAN8S_AUTO_UPDATE=yes: want registry", "fix: correct MAN8S_AUTO_UPDATE in",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, out, _ := testMachineDeps(t)
			tt.breakIt(t, completeMachine(t, d))
			err := machinesCheckRun(t.Context(), &MachinesCheckOptions{MachineDeps: d, Name: "web"})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			for _, want := range tt.wantRows {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if tt.wantErr == "" && strings.Contains(out.String(), "fail") {
				t.Errorf("a complete machine fails a check:\n%s", out)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		d, _, out, _ := testMachineDeps(t)
		completeMachine(t, d)
		if err := machinesCheckRun(t.Context(), &MachinesCheckOptions{MachineDeps: d, Name: "web", JSON: true}); err != nil {
			t.Fatal(err)
		}
		var got machineCheck
		if err := json.Unmarshal(out.Bytes(), &got); err != nil || !got.OK || len(got.Checks) < 10 || got.Checks[0].What != "root file system" {
			t.Errorf("%v %+v", err, got)
		}
	})
	t.Run("missing machine", func(t *testing.T) {
		d, _, _, _ := testMachineDeps(t)
		if err := machinesCheckRun(t.Context(), &MachinesCheckOptions{MachineDeps: d, Name: "nope"}); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestMachinesRemoveRunAsks(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  bool
		wantErr string
	}{
		{"no", false, "not removing machine web: the answer was no"},
		{"yes", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _, out, _ := testMachineDeps(t)
			p := completeMachine(t, d)
			d.IO.SetStdinTTY(true)
			var asked string
			confirm := func(_ context.Context, q string) (bool, error) { asked = q; return tt.answer, nil }
			err := machinesRemoveRun(t.Context(), &MachinesRemoveOptions{MachineDeps: d, Confirm: confirm, Name: "web"})
			if asked != "Delete machine web?" {
				t.Errorf("asked %q", asked)
			}
			_, statErr := os.Lstat(p.Rootfs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || statErr != nil {
					t.Errorf("err = %v (rootfs: %v), want %q and nothing deleted", err, statErr, tt.wantErr)
				}
				return
			}
			if err != nil || statErr == nil || !strings.Contains(out.String(), "Removed machine web.") {
				t.Errorf("err = %v, rootfs still there: %v, stdout %q", err, statErr == nil, out)
			}
		})
	}
}
