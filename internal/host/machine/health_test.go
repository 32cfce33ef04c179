package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestHealth(t *testing.T) {
	proc := t.TempDir()
	pr := Prober{Proc: proc}
	state := filepath.Join(proc, "42", "root", man8env.HealthPath)
	if h, err := pr.Health(State{Running: true, Leader: 42}); h != nil || err != nil {
		t.Fatalf("no state file: %v %v", h, err)
	}
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte(`{"status":"unhealthy","failing_streak":3,"last_output":"HTTP 500","last_exit":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := pr.Health(State{Running: true, Leader: 42})
	if err != nil || h == nil || h.Status != man8env.HealthUnhealthy || h.FailingStreak != 3 || h.LastOutput != "HTTP 500" || HealthString(h) != "unhealthy" {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	if h, _ := pr.Health(State{}); h != nil || HealthString(h) != "" {
		t.Errorf("a stopped machine has health %+v", h)
	}
	if err := os.WriteFile(state, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Health(State{Running: true, Leader: 42}); err == nil || !filepath.IsAbs(state) || !strings.Contains(err.Error(), "42") {
		t.Errorf("a broken state file: %v", err)
	}
}
