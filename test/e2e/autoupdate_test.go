package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/registry"
)

// Proof (issue 13, auto-update): three stopped machines at version 1: two
// opted in at pull (--env MAN8S_AUTO_UPDATE=registry), one on a tag that
// then moves to version 2 and one on a tag that does not, and a third on
// the moving tag that does not opt in. --dry-run names the one that would
// be upgraded and changes nothing; auto-update upgrades only that one (it
// runs version 2, stays stopped and keeps its opt-in), the others still
// run version 1; a second auto-update finds nothing to do.
//
// A running machine's restart on the new image, the wait for it to stay
// up and the rollback of one that does not need systemd as PID 1
// (systemctl restart systemd-nspawn@NAME), which this sandbox does not
// have: internal/cli's TestMachinesAutoUpdateRun and TestWaitUp cover
// them with fake commands.
func TestAutoUpdate(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	moving, fixed := reg.Addr()+"/apps/versioned:stable", reg.Addr()+"/apps/versioned:pinned"
	v1 := versionApp(t, "v1", []string{"APP_LEVEL=1"}, []string{"/var/lib/app"})
	pushT(t, v1, moving)
	pushT(t, v1, fixed)
	optIn := "--env=MAN8S_AUTO_UPDATE=registry"
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", optIn, moving, "au-moved")
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", optIn, fixed, "au-fixed")
	m.mustMbctl(t, "machines", "pull", "--quiet", "--yes", moving, "au-optout")
	pushT(t, versionApp(t, "v2", []string{"APP_LEVEL=2"}, []string{"/var/lib/app"}), moving)

	dry := m.mustMbctl(t, "machines", "auto-update", "--dry-run")
	for _, want := range []string{`(?m)^NAME +FROM +TO +RESULT$`, `(?m)^au-moved +sha256:\w{12} +sha256:\w{12} +would upgrade$`, `(?m)^au-fixed +(sha256:\w{12}) +sha256:\w{12} +up to date$`} {
		if !regexp.MustCompile(want).MatchString(dry) {
			t.Errorf("dry run lacks %s:\n%s", want, dry)
		}
	}
	if strings.Contains(dry, "au-optout") {
		t.Errorf("dry run names the machine that does not opt in:\n%s", dry)
	}
	if out := m.mustMbctl(t, "machines", "run", "au-moved"); !strings.Contains(out, "app v1 level=1") {
		t.Fatalf("after the dry run au-moved changed:\n%s", out)
	}

	var results []struct {
		Name, From, To, Result string
		Running, Restarted     bool
	}
	cmd := m.mbctl(t.Context(), "machines", "auto-update", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("auto-update --json: %v\n%s%s", err, stdout, stderr.String())
	}
	if err := json.Unmarshal(stdout, &results); err != nil {
		t.Fatalf("auto-update --json: %v\n%s", err, stdout)
	}
	if !strings.Contains(stderr.String(), "Upgrading machine au-moved from sha256:") {
		t.Errorf("auto-update's notices:\n%s", stderr.String())
	}
	got := map[string]string{}
	for _, r := range results {
		got[r.Name] = r.Result
		if r.Running || r.Restarted || r.From == "" || r.To == "" {
			t.Errorf("result %+v", r)
		}
	}
	if len(got) != 2 || got["au-moved"] != "upgraded" || got["au-fixed"] != "up_to_date" {
		t.Errorf("results %+v, want au-moved upgraded and au-fixed up_to_date only", results)
	}

	for name, want := range map[string]string{"au-moved": "app v2 level=2", "au-fixed": "app v1 level=1", "au-optout": "app v1 level=1"} {
		if out := m.mustMbctl(t, "machines", "run", name); !strings.Contains(out, want) {
			t.Errorf("%s after auto-update does not print %q:\n%s", name, want, out)
		}
	}
	if env := readFileT(t, filepath.Join(m.work, "configs/au-moved/man8env.env")); !strings.Contains(env, "MAN8S_AUTO_UPDATE=registry\n") {
		t.Errorf("the upgrade dropped the opt-in:\n%s", env)
	}

	again := m.mustMbctl(t, "machines", "auto-update")
	for _, want := range []string{`(?m)^au-moved +(sha256:\w{12}) +sha256:\w{12} +up to date$`, `(?m)^au-fixed .* up to date$`} {
		if !regexp.MustCompile(want).MatchString(again) {
			t.Errorf("second auto-update lacks %s:\n%s", want, again)
		}
	}
}
