package machine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestReachability(t *testing.T) {
	proc := t.TempDir()
	pr := Prober{Proc: proc}
	running := State{Running: true, Leader: 42}
	state := filepath.Join(proc, "42", "root", man8env.ForwardPath)
	if r, err := pr.Reachability(running); r != nil || err != nil {
		t.Fatalf("no state file: %v %v", r, err)
	}
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte(`{"ygg_address":"300::1","ports":[{"port":"8080/tcp","ygg":"forwarded","target":"127.0.0.1:8080"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := pr.Reachability(running)
	if err != nil || r == nil || len(r.Ports) != 1 || r.Ports[0].Ygg != man8env.ReachForwarded || r.Ports[0].Target != "127.0.0.1:8080" {
		t.Fatalf("Reachability = %+v, %v", r, err)
	}
	if r, _ := pr.Reachability(State{}); r != nil {
		t.Errorf("a stopped machine has reachability %+v", r)
	}
	if err := os.WriteFile(state, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Reachability(running); err == nil {
		t.Error("a broken state file was read")
	}
}
