package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/machine"
)

// runningWithHealth makes machine web run (machined names leader 4242 in
// a fake /proc) with man8s-init's state h.
func runningWithHealth(t *testing.T, d *MachineDeps, h man8env.Health) {
	t.Helper()
	machined, proc := t.TempDir(), t.TempDir()
	writeTestFile(t, filepath.Join(machined, "web"), "LEADER=4242\n")
	data, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(proc, "4242/root", man8env.HealthPath), string(data))
	d.Prober = machine.Prober{MachinedDir: machined, Proc: proc}
}

func TestMachinesListAndShowHealth(t *testing.T) {
	d, _, out, _ := testMachineDeps(t)
	completeMachine(t, d)
	last := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	runningWithHealth(t, &d, man8env.Health{Status: man8env.HealthUnhealthy, Ready: last.Add(-time.Hour), HealthCheck: "HEALTHCHECK CMD-SHELL curl -f http://localhost/",
		FailingStreak: 3, LastCheck: last, LastOutput: "curl: (7) Failed to connect\nmore", LastExit: 7})
	if err := machinesListRun(t.Context(), &MachinesListOptions{MachineDeps: d}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(out.String(), "\n"); !strings.Contains(lines[0], "STATE    HEALTH     IMAGE") || !strings.Contains(lines[1], "web   running  unhealthy  ") {
		t.Errorf("list:\n%s", out)
	}
	out.Reset()
	if err := machinesListRun(t.Context(), &MachinesListOptions{MachineDeps: d, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var infos []machine.Info
	if err := json.Unmarshal(out.Bytes(), &infos); err != nil || len(infos) != 1 || infos[0].Health == nil || infos[0].Health.Status != "unhealthy" || infos[0].Health.FailingStreak != 3 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	out.Reset()
	if err := machinesShowRun(t.Context(), &MachinesShowOptions{MachineDeps: d, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	want := "Health:       unhealthy (ready since " + formatTime(last.Add(-time.Hour)) + "; 3 failed checks in a row; check HEALTHCHECK CMD-SHELL curl -f http://localhost/; last check " +
		last.Local().Format(time.TimeOnly) + ": curl: (7) Failed to connect)"
	if !strings.Contains(out.String(), want) {
		t.Errorf("show lacks %q:\n%s", want, out)
	}
	if _, err := os.Stat(filepath.Join(d.Prober.Proc, "4242")); err != nil {
		t.Fatal(err)
	}
}
