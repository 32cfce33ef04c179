package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
)

func TestNewCmdMachinesAutoUpdate(t *testing.T) {
	ignore := cmp.Options{cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober"),
		cmpopts.IgnoreFields(MachinesAutoUpdateOptions{}, "Commands", "Getenv", "Ask", "Resolve", "Upgrade", "Rollback")}
	for _, tt := range []struct {
		name string
		args []string
		want MachinesAutoUpdateOptions
	}{
		{"defaults", nil, MachinesAutoUpdateOptions{Timeout: 30 * time.Second}},
		{"all flags", []string{"--dry-run", "--json", "--timeout", "2m"}, MachinesAutoUpdateOptions{DryRun: true, JSON: true, Timeout: 2 * time.Minute}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got *MachinesAutoUpdateOptions
			cmd := NewCmdMachinesAutoUpdate(testFactory(t), func(_ context.Context, o *MachinesAutoUpdateOptions) error { got = o; return nil })
			cmd.SetArgs(tt.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got, ignore); diff != "" {
				t.Error(diff)
			}
		})
	}
	for _, args := range [][]string{{"web"}, {"--timeout", "0"}, {"--timeout", "-1s"}} {
		cmd := NewCmdMachinesAutoUpdate(testFactory(t), func(context.Context, *MachinesAutoUpdateOptions) error { return nil })
		cmd.SetArgs(args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		var ue *usageError
		if err := cmd.Execute(); !errors.As(err, &ue) {
			t.Errorf("auto-update %q: err = %v, want a usage error", args, err)
		}
	}
}

// hookCommands is fakeCommands that calls hook before it "runs" argv.
type hookCommands struct {
	fakeCommands
	hook func(argv []string)
}

func (c *hookCommands) Run(ctx context.Context, argv []string) (int, error) {
	c.hook(argv)
	return c.fakeCommands.Run(ctx, argv)
}

// autoUpdateHost is a machine set for auto-update, with fake registry,
// upgrade and rollback, and machined state files that say which machines
// run (this test process as their leader).
type autoUpdateHost struct {
	d           MachineDeps
	out, errOut *bytes.Buffer
	machined    string
	// digests is what the registry says each reference names now.
	digests map[string]string
	// upgraded and rolledBack are the machines Upgrade and Rollback were
	// called for; upgradeOpts the options of each upgrade.
	upgraded, rolledBack []string
	upgradeOpts          []MachinesUpgradeOptions
}

func newAutoUpdateHost(t *testing.T) *autoUpdateHost {
	d, _, out, errOut := testMachineDeps(t)
	h := &autoUpdateHost{d: d, out: out, errOut: errOut, machined: t.TempDir(), digests: map[string]string{}}
	h.d.Prober = machine.Prober{MachinedDir: h.machined, Proc: "/proc"}
	return h
}

// add writes machine name following ref at digest from, with env lines
// extra; running makes it run.
func (h *autoUpdateHost) add(t *testing.T, name, ref, from, extra string, running bool) {
	t.Helper()
	p, _, err := h.d.paths(name)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(p.Rootfs, "usr/bin/app"), "")
	writeTestFile(t, p.Settings, "[Exec]\nParameters=/man8s-init/man8s-init\n")
	writeTestFile(t, p.Env, "MAN8S_CONTAINER_NAME="+name+"\nMAN8S_OCI_IMAGE_URL="+ref+"\nMAN8S_OCI_IMAGE_DIGEST="+from+"\n"+extra)
	h.setRunning(t, name, running)
}

func (h *autoUpdateHost) setRunning(t *testing.T, name string, running bool) {
	t.Helper()
	state := filepath.Join(h.machined, name)
	if !running {
		if err := os.Remove(state); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(state, fmt.Appendf(nil, "LEADER=%d\n", os.Getpid()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *autoUpdateHost) options(cmds commands) *MachinesAutoUpdateOptions {
	return &MachinesAutoUpdateOptions{
		MachineDeps: h.d, Commands: cmds, Getenv: func(string) string { return "" },
		Timeout: 300 * time.Millisecond, Settle: 20 * time.Millisecond, Poll: 2 * time.Millisecond,
		Resolve: func(_ context.Context, _ config.Config, ref string) (string, error) {
			if d, ok := h.digests[ref]; ok {
				return d, nil
			}
			return "", errors.New("no such tag")
		},
		Upgrade: func(_ context.Context, o *MachinesUpgradeOptions) (*upgraded, error) {
			h.upgraded = append(h.upgraded, o.Name)
			h.upgradeOpts = append(h.upgradeOpts, *o)
			p, _, _ := h.d.paths(o.Name)
			st, _ := h.d.Prober.Probe(p)
			return &upgraded{report: machinesUpgradeReport{Name: o.Name, To: "sha256:new", Applied: true}, running: st.Running}, nil
		},
		Rollback: func(_ config.Paths, name string, _ *slog.Logger) (*provision.RolledBack, error) {
			h.rolledBack = append(h.rolledBack, name)
			return &provision.RolledBack{}, nil
		},
	}
}

const autoOn = "MAN8S_AUTO_UPDATE=registry\n"

func TestMachinesAutoUpdateRun(t *testing.T) {
	restartOf := func(name string) []string {
		argv, _ := machine.ServiceCommand(machine.VerbRestart, name)
		return argv
	}
	setup := func(t *testing.T) *autoUpdateHost {
		h := newAutoUpdateHost(t)
		h.digests["reg.example/app:stable"] = "sha256:new"
		h.digests["reg.example/same:1"] = "sha256:old"
		h.add(t, "moved", "reg.example/app:stable", "sha256:old", autoOn, false)
		h.add(t, "same", "reg.example/same:1", "sha256:old", "# follows its tag\n"+autoOn, false)
		h.add(t, "optout", "reg.example/app:stable", "sha256:old", "", false)
		h.add(t, "off", "reg.example/app:stable", "sha256:old", "MAN8S_AUTO_UPDATE=\n", false)
		h.add(t, "live", "reg.example/app:stable", "sha256:old", autoOn, true)
		h.add(t, "broken", "reg.example/app:stable", "sha256:old", autoOn, true)
		h.add(t, "typo", "reg.example/app:stable", "sha256:old", "MAN8S_AUTO_UPDATE=local\n", false)
		h.add(t, "gone", "reg.example/gone:1", "sha256:old", autoOn, false)
		return h
	}

	t.Run("upgrade, restart, roll back", func(t *testing.T) {
		h := setup(t)
		out, errOut := h.out, h.errOut
		// broken does not come up on the new image (its restart leaves it
		// stopped) and does on the old one after the rollback.
		restarts := map[string]int{}
		cmds := &hookCommands{fakeCommands: fakeCommands{host: machine.HostInit{Systemd: true, Bus: true}}, hook: func(argv []string) {
			if slices.Equal(argv, restartOf("broken")) {
				restarts["broken"]++
				h.setRunning(t, "broken", restarts["broken"] > 1)
			}
		}}
		err := machinesAutoUpdateRun(t.Context(), h.options(cmds))
		if err == nil || !strings.Contains(err.Error(), "machine broken: rolled back: it did not come up on the new image (it did not come up within 300ms)") ||
			!strings.Contains(err.Error(), "machine typo: failed: ") || !strings.Contains(err.Error(), "machine gone: failed: resolving reg.example/gone:1") {
			t.Errorf("err = %v", err)
		}
		if want := []string{"broken", "live", "moved"}; !slices.Equal(h.upgraded, want) {
			t.Errorf("upgraded %q, want %q", h.upgraded, want)
		}
		for _, o := range h.upgradeOpts {
			if !o.Yes || !o.Quiet || o.DryRun || o.JSON || o.Image != "" || o.InitMode != "auto" || !o.Restart {
				t.Errorf("upgrade options of %s: %+v", o.Name, o)
			}
		}
		if want := []string{"broken"}; !slices.Equal(h.rolledBack, want) {
			t.Errorf("rolled back %q, want %q", h.rolledBack, want)
		}
		if want := [][]string{restartOf("broken"), restartOf("broken"), restartOf("live")}; !cmp.Equal(cmds.ran, want) {
			t.Errorf("ran %q, want %q", cmds.ran, want)
		}
		typo, _, _ := h.d.paths("typo")
		wantRows := []string{
			"NAME    FROM        TO          RESULT",
			"broken  sha256:old  sha256:new  rolled back: it did not come up on the new image (it did not come up within 300ms)",
			"gone    sha256:old  -           failed: resolving reg.example/gone:1: no such tag",
			"live    sha256:old  sha256:new  upgraded and restarted",
			"moved   sha256:old  sha256:new  upgraded, not started (it was stopped)",
			"same    sha256:old  sha256:old  up to date",
			"typo    -           -           failed: " + typo.Env + ": MAN8S_AUTO_UPDATE=local: want registry (or empty or absent for off)",
		}
		if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); !cmp.Equal(got, wantRows) {
			t.Errorf("table:\n%s\nwant:\n%s", out, strings.Join(wantRows, "\n"))
		}
		for _, want := range []string{"Upgrading machine moved from sha256:old to sha256:new...", "Machine broken did not come up on sha256:new (it did not come up within 300ms): rolling back."} {
			if !strings.Contains(errOut.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
	})

	t.Run("the old version does not come up either", func(t *testing.T) {
		h := newAutoUpdateHost(t)
		h.digests["reg.example/app:stable"] = "sha256:new"
		h.add(t, "broken", "reg.example/app:stable", "sha256:old", autoOn, true)
		cmds := &hookCommands{fakeCommands: fakeCommands{host: machine.HostInit{Systemd: true}}, hook: func([]string) { h.setRunning(t, "broken", false) }}
		o := h.options(cmds)
		o.JSON = true
		err := machinesAutoUpdateRun(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), "nor on the old one (it did not come up within 300ms)") {
			t.Errorf("err = %v", err)
		}
		var got []autoUpdateResult
		if jerr := json.Unmarshal(h.out.Bytes(), &got); jerr != nil {
			t.Fatal(jerr)
		}
		if len(got) != 1 || got[0].Result != autoRolledBack || !got[0].Running || got[0].Restarted {
			t.Errorf("results %+v", got)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		h := setup(t)
		cmds := &fakeCommands{host: machine.HostInit{Systemd: true}}
		o := h.options(cmds)
		o.DryRun, o.JSON = true, true
		if err := machinesAutoUpdateRun(t.Context(), o); err == nil {
			t.Error("a dry run with a bad MAN8S_AUTO_UPDATE passed")
		}
		if len(h.upgraded) > 0 || len(h.rolledBack) > 0 || len(cmds.ran) > 0 {
			t.Errorf("a dry run changed something: upgraded %q, rolled back %q, ran %q", h.upgraded, h.rolledBack, cmds.ran)
		}
		var got []autoUpdateResult
		if err := json.Unmarshal(h.out.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		results := map[string]string{}
		for _, r := range got {
			results[r.Name] = r.Result
		}
		want := map[string]string{"broken": autoWouldUpgrade, "gone": autoFailed, "live": autoWouldUpgrade, "moved": autoWouldUpgrade, "same": autoUpToDate, "typo": autoFailed}
		if diff := cmp.Diff(want, results); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		if r := got[slices.IndexFunc(got, func(r autoUpdateResult) bool { return r.Name == "live" })]; r.summary() != "would upgrade and restart" || r.From != "sha256:old" || r.To != "sha256:new" || r.Image != "reg.example/app:stable" {
			t.Errorf("live: %+v (%s)", r, r.summary())
		}
	})

	t.Run("foreground machines are skipped", func(t *testing.T) {
		h := newAutoUpdateHost(t)
		h.digests["reg.example/app:stable"] = "sha256:new"
		h.add(t, "fg", "reg.example/app:stable", "sha256:old", autoOn, true)
		h.add(t, "stopped", "reg.example/app:stable", "sha256:old", autoOn, false)
		p, _, _ := h.d.paths("norootfs")
		writeTestFile(t, p.Env, autoOn+"MAN8S_OCI_IMAGE_URL=reg.example/app:stable\n")
		cmds := &fakeCommands{}
		if err := machinesAutoUpdateRun(t.Context(), h.options(cmds)); err != nil {
			t.Fatalf("skips are no failures: %v", err)
		}
		if want := []string{"stopped"}; !slices.Equal(h.upgraded, want) || len(cmds.ran) > 0 {
			t.Errorf("upgraded %q (want %q), ran %q", h.upgraded, want, cmds.ran)
		}
		out := h.out.String()
		for _, want := range []string{"fg        sha256:old  sha256:new  skipped: runs in the foreground ('mbctl machines run'): stop it and run 'mbctl machines upgrade fg'",
			"norootfs  -           -           skipped: no root file system at " + p.Rootfs + " ('mbctl machines rebuild norootfs' makes it again)"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("no machine opts in", func(t *testing.T) {
		h := newAutoUpdateHost(t)
		h.add(t, "optout", "reg.example/app:stable", "sha256:old", "", false)
		out, errOut := h.out, h.errOut
		if err := machinesAutoUpdateRun(t.Context(), h.options(&fakeCommands{})); err != nil {
			t.Fatal(err)
		}
		if out.Len() != 0 || !strings.Contains(errOut.String(), "No machine opts in to auto-update: add MAN8S_AUTO_UPDATE=registry") {
			t.Errorf("stdout %q, stderr %q", out, errOut)
		}
	})
}

func TestWaitUp(t *testing.T) {
	up := func(leader int) machine.State { return machine.State{Running: true, Leader: leader} }
	down := machine.State{}
	for _, tt := range []struct {
		name    string
		states  []machine.State // the last one repeats
		wantErr string
	}{
		{"comes up and stays", []machine.State{down, down, up(7)}, ""},
		{"nspawn pid when machined has no leader", []machine.State{{Running: true, Nspawn: 9}}, ""},
		{"never comes up", []machine.State{down}, "it did not come up within 50ms"},
		{"exits after it came up", []machine.State{down, up(7), up(7), down}, "it stopped "},
		{"restarts after it came up", []machine.State{up(7), up(8)}, "it restarted "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := &MachinesAutoUpdateOptions{Timeout: 50 * time.Millisecond, Settle: 30 * time.Millisecond, Poll: time.Millisecond}
			i := 0
			err := o.waitUp(t.Context(), func() (machine.State, error) {
				st := tt.states[min(i, len(tt.states)-1)]
				i++
				return st, nil
			})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("probe error", func(t *testing.T) {
		o := &MachinesAutoUpdateOptions{Timeout: time.Second, Settle: time.Second, Poll: time.Millisecond}
		boom := errors.New("boom")
		if err := o.waitUp(t.Context(), func() (machine.State, error) { return machine.State{}, boom }); !errors.Is(err, boom) {
			t.Errorf("err = %v", err)
		}
	})
}

// The shipped units run a command line that this mbctl knows.
func TestAutoUpdateUnits(t *testing.T) {
	svc, err := unitfile.ReadFile("../../systemd-configs/mbctl-auto-update.service")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := svc.Get("Service", "Type"); v != "oneshot" {
		t.Errorf("Type=%s, want oneshot", v)
	}
	exec, _ := svc.Get("Service", "ExecStart")
	argv := strings.Fields(exec)
	if len(argv) < 2 || argv[0] != "/usr/local/bin/mbctl" {
		t.Fatalf("ExecStart=%s: want /usr/local/bin/mbctl (make install replaces the prefix)", exec)
	}
	cmd, rest, err := NewRootCmd(testFactory(t)).Find(argv[1:])
	if err != nil || cmd.Name() != "auto-update" || cmd.Parent().Name() != "machines" || len(rest) != 0 {
		t.Errorf("ExecStart=%s is %q with %q left (%v), want machines auto-update", exec, cmd.CommandPath(), rest, err)
	}
	timer, err := unitfile.ReadFile("../../systemd-configs/mbctl-auto-update.timer")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"OnCalendar": "daily", "RandomizedDelaySec": "900", "Persistent": "true"} {
		if v, _ := timer.Get("Timer", key); v != want {
			t.Errorf("timer %s=%s, want %s", key, v, want)
		}
	}
	if v, _ := timer.Get("Install", "WantedBy"); v != "timers.target" {
		t.Errorf("timer WantedBy=%s, want timers.target", v)
	}
}
