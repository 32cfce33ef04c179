package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/machine"
)

// fakeCommands records what mbctl would run.
type fakeCommands struct {
	host machine.HostInit
	code int
	ran  [][]string
	exec []string
	env  []string
}

func (c *fakeCommands) Host() machine.HostInit { return c.host }
func (c *fakeCommands) Run(_ context.Context, argv []string) (int, error) {
	c.ran = append(c.ran, argv)
	return c.code, nil
}
func (c *fakeCommands) Exec(argv, env []string) error {
	c.exec, c.env = argv, env
	return nil
}

func runWith(t *testing.T, env map[string]string, f *Factory, args ...string) (int, string) {
	t.Helper()
	ios, _, _, errOut := iostreams.Test()
	f.IO, f.Getenv = ios, func(k string) string { return env[k] }
	code := run(context.Background(), args, f)
	return code, errOut.String()
}

func TestMachineLifecycleCommands(t *testing.T) {
	env, root := machineDirs(t)
	rootfs := filepath.Join(root, "machines/web")
	writeTestFile(t, filepath.Join(rootfs, "bin/sh"), "")
	writeTestFile(t, filepath.Join(root, "configs/web/container.nspawn"), "[Exec]\nEnvironment=PATH=/app/bin:/bin \"LANG=C.UTF-8\"\n")
	writeTestFile(t, filepath.Join(root, "configs/web/man8env.env"), "MAN8S_CONTAINER_NAME=web\nAPP_MODE=prod mode\n")
	env["TERM"] = "xterm-256color"
	unit := "systemd-nspawn@web.service"
	tests := []struct {
		name     string
		host     machine.HostInit
		code     int
		args     []string
		wantCode int
		wantRun  []string
		wantErr  string
	}{
		{name: "run without a bus", args: []string{"machines", "run", "web"},
			wantRun: []string{"systemd-nspawn", "--quiet", "--machine=web", "--directory=" + rootfs, "--register=no", "--keep-unit"}},
		{name: "run passes the app's status", host: machine.HostInit{Systemd: true, Bus: true}, code: 3, args: []string{"machines", "run", "web"}, wantCode: 3,
			wantRun: []string{"systemd-nspawn", "--quiet", "--machine=web", "--directory=" + rootfs}},
		{name: "start", host: machine.HostInit{Systemd: true, Bus: true}, args: []string{"machines", "start", "web"}, wantRun: []string{"machinectl", "start", "web"}},
		{name: "stop", host: machine.HostInit{Systemd: true, Bus: true}, args: []string{"machines", "stop", "web"}, wantRun: []string{"systemctl", "stop", unit}},
		{name: "restart", host: machine.HostInit{Systemd: true, Bus: true}, args: []string{"machines", "restart", "web"}, wantRun: []string{"systemctl", "restart", unit}},
		{name: "status", host: machine.HostInit{Systemd: true, Bus: true}, code: 3, args: []string{"machines", "status", "web"}, wantCode: 3,
			wantRun: []string{"systemctl", "status", "--no-pager", "--full", unit}},
		{name: "enable", host: machine.HostInit{Systemd: true, Bus: true}, args: []string{"machines", "enable", "web"}, wantRun: []string{"machinectl", "enable", "web"}},
		{name: "disable", host: machine.HostInit{Systemd: true, Bus: true}, args: []string{"machines", "disable", "web"}, wantRun: []string{"machinectl", "disable", "web"}},
		{name: "start without systemd names run", args: []string{"machines", "start", "web"}, wantCode: 1, wantErr: "use 'mbctl machines run web'"},
		{name: "logs without systemd", args: []string{"machines", "logs", "web"}, wantCode: 1, wantErr: "systemd is not PID 1"},
		{name: "unknown machine", host: machine.HostInit{Systemd: true}, args: []string{"machines", "start", "nope"}, wantCode: 1, wantErr: "machine nope does not exist"},
		{name: "shell of a stopped machine", args: []string{"machines", "shell", "web"}, wantCode: 1, wantErr: "is not running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds := &fakeCommands{host: tt.host, code: tt.code}
			code, stderr := runWith(t, env, &Factory{Commands: cmds, Prober: noMachinesRun(t)}, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, stderr, tt.wantCode, tt.wantErr)
			}
			if tt.wantRun == nil {
				if len(cmds.ran) > 0 {
					t.Errorf("ran %q", cmds.ran)
				}
				return
			}
			if len(cmds.ran) != 1 || !slices.Equal(cmds.ran[0], tt.wantRun) {
				t.Errorf("ran %q, want %q", cmds.ran, tt.wantRun)
			}
		})
	}

	t.Run("logs", func(t *testing.T) {
		cmds := &fakeCommands{host: machine.HostInit{Systemd: true}}
		if code, stderr := runWith(t, env, &Factory{Commands: cmds, Prober: noMachinesRun(t)}, "machines", "logs", "-f", "-n", "20", "web"); code != 0 {
			t.Fatal(stderr)
		}
		if want := []string{"journalctl", "--no-pager", "--unit=" + unit, "--lines=20", "--follow"}; !slices.Equal(cmds.exec, want) {
			t.Errorf("exec %q, want %q", cmds.exec, want)
		}
	})

	// A running machine (machined says its leader is this test process).
	machined := t.TempDir()
	if err := os.WriteFile(filepath.Join(machined, "web"), fmt.Appendf(nil, "LEADER=%d\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
	target := fmt.Sprintf("--target=%d", os.Getpid())
	for _, tt := range []struct {
		name     string
		args     []string
		wantExec []string
		wantEnv  []string
	}{
		{"login shell", []string{"machines", "shell", "web"},
			[]string{"nsenter", target, "--user", "--mount", "--pid", "--net", "--uts", "--ipc", "--cgroup", "--root", "--wd", "--", "/bin/sh", "-l"},
			[]string{"PATH=/app/bin:/bin", "LANG=C.UTF-8", "MAN8S_CONTAINER_NAME=web", "APP_MODE=prod mode", "TERM=xterm-256color"}},
		{"command", []string{"machines", "shell", "web", "--", "ls", "-l", "/data"},
			[]string{"nsenter", target, "--user", "--mount", "--pid", "--net", "--uts", "--ipc", "--cgroup", "--root", "--wd", "--", "ls", "-l", "/data"}, nil},
		{"network only", []string{"machines", "shell", "--network-only", "web", "--", "ip", "-6", "addr"},
			[]string{"nsenter", target, "--net", "--", "ip", "-6", "addr"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmds := &fakeCommands{}
			code, stderr := runWith(t, env, &Factory{Commands: cmds, Prober: machine.Prober{MachinedDir: machined, Proc: "/proc"}}, tt.args...)
			if code != 0 {
				t.Fatal(stderr)
			}
			if !slices.Equal(cmds.exec, tt.wantExec) {
				t.Errorf("exec %q\nwant %q", cmds.exec, tt.wantExec)
			}
			if tt.wantEnv != nil && !slices.Equal(cmds.env, tt.wantEnv) {
				t.Errorf("env %q\nwant %q", cmds.env, tt.wantEnv)
			}
		})
	}
	if code, stderr := runWith(t, env, &Factory{Commands: &fakeCommands{}, Prober: noMachinesRun(t)}, "machines", "shell", "web", "extra"); code != 2 {
		t.Errorf("shell with a stray argument: %d %q", code, stderr)
	}
}

func TestNewCmdMachinesLife(t *testing.T) {
	run := func(t *testing.T, cmd *cobra.Command, args ...string) {
		t.Helper()
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	}
	ignore := cmp.Options{cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober"),
		cmpopts.IgnoreFields(MachinesShellOptions{}, "Commands", "Getenv"), cmpopts.IgnoreFields(MachinesLogsOptions{}, "Commands"),
		cmpopts.IgnoreFields(MachinesRunOptions{}, "Commands"), cmpopts.IgnoreFields(MachinesServiceOptions{}, "Commands")}
	f := func() *Factory { f := testFactory(t); f.Commands = &fakeCommands{}; return f }
	t.Run("run", func(t *testing.T) {
		var got *MachinesRunOptions
		run(t, NewCmdMachinesRun(f(), func(_ context.Context, o *MachinesRunOptions) error { got = o; return nil }), "web")
		if diff := cmp.Diff(&MachinesRunOptions{Name: "web"}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("service verb", func(t *testing.T) {
		var got *MachinesServiceOptions
		run(t, NewCmdMachinesService(f(), machine.VerbRestart, "Restart", func(_ context.Context, o *MachinesServiceOptions) error { got = o; return nil }), "web")
		if diff := cmp.Diff(&MachinesServiceOptions{Verb: machine.VerbRestart, Name: "web"}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("logs", func(t *testing.T) {
		var got *MachinesLogsOptions
		run(t, NewCmdMachinesLogs(f(), func(_ context.Context, o *MachinesLogsOptions) error { got = o; return nil }), "-fn", "7", "web")
		if diff := cmp.Diff(&MachinesLogsOptions{Name: "web", Follow: true, Lines: 7}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("shell", func(t *testing.T) {
		var got *MachinesShellOptions
		run(t, NewCmdMachinesShell(f(), func(_ context.Context, o *MachinesShellOptions) error { got = o; return nil }), "--network-only", "web", "--", "ss", "-tln")
		if diff := cmp.Diff(&MachinesShellOptions{Name: "web", NetworkOnly: true, Command: []string{"ss", "-tln"}}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
}

func TestMachinesLifeRun(t *testing.T) {
	systemd := machine.HostInit{Systemd: true, Bus: true}
	for _, tt := range []struct {
		name     string
		run      func(context.Context, MachineDeps, commands) error
		wantRan  bool
		wantErr  string
		wantWarn string
	}{
		{"run warns about env lines", func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesRunRun(ctx, &MachinesRunOptions{MachineDeps: d, Commands: c, Name: "web"})
		}, true, "", `line 2: defines a variable named "export MODE"`},
		{"start warns about env lines", func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesServiceRun(ctx, &MachinesServiceOptions{MachineDeps: d, Commands: c, Verb: machine.VerbStart, Name: "web"})
		}, true, "", `line 2: defines a variable named "export MODE"`},
		{"stop does not", func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesServiceRun(ctx, &MachinesServiceOptions{MachineDeps: d, Commands: c, Verb: machine.VerbStop, Name: "web"})
		}, true, "", ""},
		{"logs refuses a negative count", func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesLogsRun(ctx, &MachinesLogsOptions{MachineDeps: d, Commands: c, Name: "web", Lines: -1})
		}, false, "--lines -1: want a count of 0 or more", ""},
		{"shell of a missing machine", func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesShellRun(ctx, &MachinesShellOptions{MachineDeps: d, Commands: c, Getenv: func(string) string { return "" }, Name: "nope"})
		}, false, "machine nope does not exist: no root file system", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _, _, errOut := testMachineDeps(t)
			p := completeMachine(t, d)
			writeTestFile(t, p.Env, "MAN8S_CONTAINER_NAME=web\nexport MODE=prod\n")
			cmds := &fakeCommands{host: systemd}
			err := tt.run(t.Context(), d, cmds)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if ran := len(cmds.ran) > 0; ran != tt.wantRan {
				t.Errorf("ran %q", cmds.ran)
			}
			if tt.wantWarn == "" && strings.Contains(errOut.String(), "warning:") || !strings.Contains(errOut.String(), tt.wantWarn) {
				t.Errorf("stderr %q, want %q", errOut, tt.wantWarn)
			}
		})
	}
}
