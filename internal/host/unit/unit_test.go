package unit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDependAndUndepend(t *testing.T) {
	dir := t.TempDir()
	d, changed, err := Depend(dir, "app", "db", Requires)
	if err != nil || !changed {
		t.Fatalf("Depend = %v %v", changed, err)
	}
	want := `# Written by mbctl: machines depend app --on db.
# Remove with 'mbctl machines depend app --on db --remove'.
[Unit]
After=systemd-nspawn@db.service
Requires=systemd-nspawn@db.service
`
	if got, _ := os.ReadFile(filepath.Join(dir, "systemd-nspawn@app.service.d/50-mbctl-depend-db.conf")); string(got) != want || d.Path != filepath.Join(dir, "systemd-nspawn@app.service.d/50-mbctl-depend-db.conf") {
		t.Errorf("drop-in %s:\n%s", d.Path, got)
	}
	if _, changed, err := Depend(dir, "app", "db", Requires); err != nil || changed {
		t.Errorf("second Depend = %v %v, want no change", changed, err)
	}
	if _, _, err := Depend(dir, "app", "cache", Wants); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(DependPath(dir, "app", "cache"))
	if !strings.Contains(string(got), "\nAfter=systemd-nspawn@cache.service\nWants=systemd-nspawn@cache.service\n") || !strings.Contains(string(got), "--on cache --wants.") {
		t.Errorf("wants drop-in:\n%s", got)
	}
	if _, _, err := Depend(dir, "db", "backup", Requires); err != nil {
		t.Fatal(err)
	}
	deps, err := DependsOn(dir, "app")
	if diff := cmp.Diff([]Dependency{
		{Machine: "app", On: "cache", Kind: Wants, Path: DependPath(dir, "app", "cache")},
		{Machine: "app", On: "db", Kind: Requires, Path: DependPath(dir, "app", "db")},
	}, deps); err != nil || diff != "" {
		t.Errorf("DependsOn %v:\n%s", err, diff)
	}
	dependants, err := Dependants(dir, "db")
	if diff := cmp.Diff([]Dependency{{Machine: "app", On: "db", Kind: Requires, Path: DependPath(dir, "app", "db")}}, dependants); err != nil || diff != "" {
		t.Errorf("Dependants %v:\n%s", err, diff)
	}

	// Cycles, direct and through another machine, and self.
	for _, tt := range []struct{ a, b, want string }{
		{"db", "app", "machine app already depends on db (app -> db): db on app would make a cycle"},
		{"backup", "app", "machine app already depends on backup (app -> db -> backup)"},
		{"app", "app", "cannot depend on itself"},
	} {
		if _, _, err := Depend(dir, tt.a, tt.b, Requires); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Depend(%s, %s) = %v, want %q", tt.a, tt.b, err, tt.want)
		}
	}

	if _, removed, err := Undepend(dir, "app", "db"); err != nil || !removed {
		t.Errorf("Undepend = %v %v", removed, err)
	}
	if _, removed, err := Undepend(dir, "app", "db"); err != nil || removed {
		t.Errorf("second Undepend = %v %v", removed, err)
	}
	if _, _, err := Undepend(dir, "app", "cache"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(DropInDir(dir, "app")); !os.IsNotExist(err) {
		t.Errorf("empty drop-in dir left: %v", err)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	if p, err := Restart(dir, "web"); p != "" || err != nil {
		t.Fatalf("Restart of a machine without one = %q %v", p, err)
	}
	path, changed, err := SetRestart(dir, "web", "on-failure")
	if err != nil || !changed || path != filepath.Join(dir, "systemd-nspawn@web.service.d/50-mbctl-restart.conf") {
		t.Fatalf("SetRestart = %s %v %v", path, changed, err)
	}
	if got, _ := os.ReadFile(path); string(got) != "# Written by mbctl: machines set web --restart on-failure (or pull --restart).\n[Service]\nRestart=on-failure\n" {
		t.Errorf("drop-in:\n%s", got)
	}
	if p, err := Restart(dir, "web"); p != "on-failure" || err != nil {
		t.Errorf("Restart = %q %v", p, err)
	}
	if _, _, err := SetRestart(dir, "web", "sometimes"); err == nil || !strings.Contains(err.Error(), "want no, on-failure, always") {
		t.Errorf("bad policy: %v", err)
	}
	// A user's own drop-in beside mbctl's stays.
	own := filepath.Join(DropInDir(dir, "web"), "90-mine.conf")
	if err := os.WriteFile(own, []byte("[Service]\nCPUQuota=50%\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Depend(dir, "web", "db", Wants)
	removed, err := RemoveAll(dir, "web")
	if err != nil || len(removed) != 2 {
		t.Errorf("RemoveAll = %q %v", removed, err)
	}
	if _, err := os.Stat(own); err != nil {
		t.Errorf("the user's drop-in went: %v", err)
	}
}
