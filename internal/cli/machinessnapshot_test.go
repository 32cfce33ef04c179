package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/testbed/loopfs"
)

func TestNewCmdMachinesSnapshot(t *testing.T) {
	ignore := cmpopts.IgnoreFields(MachineDeps{}, "IO", "Config", "Log", "Prober")
	run := func(t *testing.T, cmd *cobra.Command, args ...string) error {
		t.Helper()
		cmd.SetArgs(args)
		cmd.SetOut(&strings.Builder{})
		cmd.SetErr(&strings.Builder{})
		return cmd.Execute()
	}
	var snap *MachinesSnapshotOptions
	snapCmd := func() *cobra.Command {
		return NewCmdMachinesSnapshot(testFactory(t), func(_ context.Context, o *MachinesSnapshotOptions) error { snap = o; return nil })
	}
	for _, tt := range []struct {
		args []string
		want *MachinesSnapshotOptions
	}{
		{[]string{"db"}, &MachinesSnapshotOptions{Name: "db"}},
		{[]string{"db", "before", "--volumes", "--json"}, &MachinesSnapshotOptions{Name: "db", Label: "before", Volumes: true, JSON: true}},
		{[]string{"--delete", "db", "before"}, &MachinesSnapshotOptions{Name: "db", Label: "before", Delete: true}},
	} {
		snap = nil
		if err := run(t, snapCmd(), tt.args...); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if diff := cmp.Diff(tt.want, snap, ignore, cmpopts.IgnoreFields(MachinesSnapshotOptions{}, "Now")); diff != "" {
			t.Errorf("%v: %s", tt.args, diff)
		}
	}
	if err := run(t, snapCmd(), "--delete", "db"); err == nil || !strings.Contains(err.Error(), "--delete needs the LABEL") {
		t.Errorf("--delete without a label: %v", err)
	}
	var restore *MachinesRestoreOptions
	if err := run(t, NewCmdMachinesRestore(testFactory(t), func(_ context.Context, o *MachinesRestoreOptions) error { restore = o; return nil }), "-y", "--volumes", "db", "l1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&MachinesRestoreOptions{Name: "db", Label: "l1", Volumes: true, Yes: true}, restore, ignore, cmpopts.IgnoreFields(MachinesRestoreOptions{}, "Confirm")); diff != "" {
		t.Error(diff)
	}
	var list *MachinesSnapshotsOptions
	if err := run(t, NewCmdMachinesSnapshots(testFactory(t), func(_ context.Context, o *MachinesSnapshotsOptions) error { list = o; return nil }), "db", "--json"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&MachinesSnapshotsOptions{Name: "db", JSON: true}, list, ignore); diff != "" {
		t.Error(diff)
	}
}

// TestMachinesSnapshotRun takes, lists and restores a snapshot of a
// machine on btrfs, and says what is needed elsewhere.
func TestMachinesSnapshotRun(t *testing.T) {
	d, _, out, _ := testMachineDeps(t)
	p := completeMachine(t, d)
	err := machinesSnapshotRun(t.Context(), &MachinesSnapshotOptions{MachineDeps: d, Now: time.Now, Name: "web", Label: "x"})
	if err == nil || !strings.Contains(err.Error(), "snapshots need btrfs") || !strings.Contains(err.Error(), "paths.machines") {
		t.Fatalf("snapshot on ext4/tmpfs: %v", err)
	}

	// The same machine with its machines dir on btrfs.
	cfg, _, _ := d.Config()
	mnt := loopfs.MountT(t, "btrfs", 256<<20)
	cfg.Paths.Machines = filepath.Join(mnt, "machines")
	d.Config = func() (config.Config, config.Origin, error) { return cfg, config.Origin{}, nil }
	if err := os.MkdirAll(cfg.Paths.Machines, 0o700); err != nil {
		t.Fatal(err)
	}
	p, _, _ = d.paths("web")
	if err := btrfs.Create(p.Rootfs); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(p.Rootfs, "usr/bin/app")
	writeTestFile(t, app, "v1")
	now := func() time.Time { return time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC) }
	if err := machinesSnapshotRun(t.Context(), &MachinesSnapshotOptions{MachineDeps: d, Now: now, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Snapshot 20261204-010203 of machine web") {
		t.Errorf("snapshot output: %q", out)
	}
	writeTestFile(t, app, "v2")
	out.Reset()
	if err := machinesSnapshotsRun(t.Context(), &MachinesSnapshotsOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "20261204-010203") {
		t.Errorf("snapshots: %q", out)
	}
	ro := &MachinesRestoreOptions{MachineDeps: d, Name: "web", Label: "20261204-010203"}
	if err := machinesRestoreRun(t.Context(), ro); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("restore without a terminal or --yes: %v", err)
	}
	ro.Yes = true
	if err := machinesRestoreRun(t.Context(), ro); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(app); string(b) != "v1" {
		t.Errorf("after the restore the app is %q", b)
	}
}
