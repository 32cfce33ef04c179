package testbed

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A testbed whose owner died is swept: the recorded process inside its
// namespace is killed, a recorded PID outside it is left alone, and the
// namespace and its record are removed.
func TestSweepRemovesLeftoversOfDeadOwners(t *testing.T) {
	RequireT(t, "nsenter", "sleep")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	// Not namePrefix: the sweeps of testbeds started meanwhile by other
	// packages' tests would take this namespace away.
	const prefix = "mbtbsweeptest-"
	name := fmt.Sprintf("%s%d-sweep0", prefix, dead.Process.Pid)
	if err := createNetns(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteNetns(name); _ = forgetOwner(name) })
	if err := recordOwner(name); err != nil {
		t.Fatal(err)
	}

	inside := exec.Command("nsenter", "--net="+filepath.Join(netnsDir, name), "sleep", "600")
	outside := exec.Command("sleep", "600")
	for _, c := range []*exec.Cmd{inside, outside} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		if err := recordPID(name, c.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	insideDone := make(chan error, 1)
	go func() { insideDone <- inside.Wait() }()

	// nsenter execs sleep; wait until it runs in the namespace.
	deadline := time.Now().Add(10 * time.Second)
	for !sameNetns(t, inside.Process.Pid, name) {
		if time.Now().After(deadline) {
			t.Fatal("the process never entered the namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := sweep(slog.New(slog.DiscardHandler), prefix); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	select {
	case <-insideDone:
	case <-time.After(10 * time.Second):
		t.Error("the process inside the dead owner's namespace was not killed")
	}
	if !processExists(outside.Process.Pid) {
		t.Error("a recorded process outside the namespace was killed")
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still exists: %v", name, err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record of %s still exists: %v", name, err)
	}
}

func sameNetns(t *testing.T, pid int, name string) bool {
	t.Helper()
	a, err1 := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	b, err2 := os.Stat(filepath.Join(netnsDir, name))
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func TestOwnerPID(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		ok   bool
	}{
		{"mbtb-123-abcdef", 123, true},
		{"mbtb-0-abcdef", 0, false},
		{"mbtb-x-abcdef", 0, false},
		{"mbtb-123", 0, false},
		{"other-123-abcdef", 0, false},
	}
	for _, tt := range tests {
		pid, ok := ownerPID(tt.name, namePrefix)
		if ok != tt.ok || (ok && pid != tt.pid) {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.ok)
		}
	}
}
