package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/man8s/mbctl/internal/host/machine"
)

func TestNewCmdMachinesUpgradeRollback(t *testing.T) {
	ignore := cmp.Options{cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober"),
		cmpopts.IgnoreFields(MachinesUpgradeOptions{}, "Commands", "Getenv", "Ask", "RunProbe"), cmpopts.IgnoreUnexported(MachinesUpgradeOptions{}), cmpopts.IgnoreFields(MachinesRollbackOptions{}, "Commands")}
	t.Run("upgrade", func(t *testing.T) {
		var got *MachinesUpgradeOptions
		cmd := NewCmdMachinesUpgrade(testFactory(t), func(_ context.Context, o *MachinesUpgradeOptions) error { got = o; return nil })
		cmd.SetArgs([]string{"db", "--image", "postgres:17", "--volume", "/logs=data", "--restart", "--dry-run", "-y", "--json", "--no-probe"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		want := &MachinesUpgradeOptions{Name: "db", Image: "postgres:17", Volumes: []string{"/logs=data"}, InitMode: "auto", Restart: true, DryRun: true, Yes: true, JSON: true, NoProbe: true}
		if diff := cmp.Diff(want, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		var got *MachinesRollbackOptions
		cmd := NewCmdMachinesRollback(testFactory(t), func(_ context.Context, o *MachinesRollbackOptions) error { got = o; return nil })
		cmd.SetArgs([]string{"--restart", "db"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&MachinesRollbackOptions{Name: "db", Restart: true}, got, ignore); diff != "" {
			t.Error(diff)
		}
	})
}

// The refusals that come before any download.
func TestMachinesUpgradeRollbackRefuse(t *testing.T) {
	running := func(t *testing.T, d *MachineDeps) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "web"), fmt.Appendf(nil, "LEADER=%d\n", os.Getpid()), 0o644); err != nil {
			t.Fatal(err)
		}
		d.Prober = machine.Prober{MachinedDir: dir, Proc: "/proc"}
	}
	for _, tt := range []struct {
		name    string
		setup   func(t *testing.T, d *MachineDeps)
		run     func(context.Context, MachineDeps, commands) error
		wantErr string
	}{
		{"upgrade of a missing machine", nil, func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesUpgradeRun(ctx, &MachinesUpgradeOptions{MachineDeps: d, Commands: c, Name: "nope", InitMode: "auto"})
		}, "machine nope does not exist"},
		{"upgrade of a running machine", running, func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesUpgradeRun(ctx, &MachinesUpgradeOptions{MachineDeps: d, Commands: c, Name: "web", InitMode: "auto"})
		}, "machine web is running: pass --restart"},
		{"upgrade --restart of a foreground machine", running, func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesUpgradeRun(ctx, &MachinesUpgradeOptions{MachineDeps: d, Commands: c, Name: "web", InitMode: "auto", Restart: true})
		}, "runs in the foreground"},
		{"upgrade with a bad init mode", nil, func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesUpgradeRun(ctx, &MachinesUpgradeOptions{MachineDeps: d, Commands: c, Name: "web", InitMode: "pid7"})
		}, "--init-mode"},
		{"rollback never upgraded", nil, func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesRollbackRun(ctx, &MachinesRollbackOptions{MachineDeps: d, Commands: c, Name: "web"})
		}, "machine web has no version to go back to"},
		{"rollback of a running machine", running, func(ctx context.Context, d MachineDeps, c commands) error {
			return machinesRollbackRun(ctx, &MachinesRollbackOptions{MachineDeps: d, Commands: c, Name: "web"})
		}, "machine web is running: pass --restart"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _, _, _ := testMachineDeps(t)
			completeMachine(t, d)
			if tt.setup != nil {
				tt.setup(t, &d)
			}
			err := tt.run(t.Context(), d, &fakeCommands{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
