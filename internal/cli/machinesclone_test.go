package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewCmdMachinesClone(t *testing.T) {
	var got *MachinesCloneOptions
	cmd := NewCmdMachinesClone(testFactory(t), func(_ context.Context, o *MachinesCloneOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"sw-master", "sw-filer", "--cmd", "filer -x", "--env", "A=1", "--volume", "/data=data", "-y"})
	cmd.SetOut(&strings.Builder{})
	cmd.SetErr(&strings.Builder{})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	po := got.Pull
	if got.Src != "sw-master" || po.Name != "sw-filer" || po.Cmd == nil || *po.Cmd != "filer -x" || po.Entrypoint != nil ||
		!po.Yes || strings.Join(po.Env, ",") != "A=1" || strings.Join(po.Volumes, ",") != "/data=data" {
		t.Errorf("options: src %q, %+v", got.Src, po)
	}
}

// TestMachinesCloneRunNeedsSource: a clone of a machine that is not there
// says so before anything is made.
func TestMachinesCloneRunNeedsSource(t *testing.T) {
	d, _, _, _ := testMachineDeps(t)
	err := machinesCloneRun(t.Context(), &MachinesCloneOptions{Src: "gone", Pull: MachinesPullOptions{IO: d.IO, Config: d.Config, Log: d.Log, Name: "new"}})
	if err == nil || !strings.Contains(err.Error(), "machine gone cannot be cloned without its environment file") {
		t.Fatalf("clone of a missing machine: %v", err)
	}
}

func TestSettingsUplink(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"[Network]\nMACVLAN=enp3s0\nVirtualEthernet=yes\n", "enp3s0"},
		{"[Network]\nMACVLAN=\nMACVLAN=eth1 eth2\n", "eth1"},
		{"[Network]\nVirtualEthernet=yes\n", ""},
	} {
		path := filepath.Join(dir, "c.nspawn")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := settingsUplink(path); got != tt.want {
			t.Errorf("settingsUplink(%q) = %q, want %q", tt.content, got, tt.want)
		}
	}
	if got := settingsUplink(filepath.Join(dir, "absent")); got != "" {
		t.Errorf("settingsUplink of no file = %q", got)
	}
}
