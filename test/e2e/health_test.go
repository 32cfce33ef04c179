package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// healthyApp serves /www on port 8080 at once; its index is made at every
// start, so a restarted app is healthy again.
const healthyApp = `mkdir -p /www && echo ok > /www/index.html
echo "app: serving"
exec httpd -f -p 8080 -h /www
`

// health returns what `machines list --json` says of name's health.
func (m *machineHost) health(t *testing.T, name string) machine.Info {
	t.Helper()
	var infos []machine.Info
	out := m.mustMbctl(t, "machines", "list", "--json")
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("machines list --json: %v\n%s", err, out)
	}
	for _, in := range infos {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("machine %s not listed:\n%s", name, out)
	return machine.Info{}
}

func (m *machineHost) waitHealth(t *testing.T, name, status string) machine.Info {
	t.Helper()
	var in machine.Info
	if !poll(30*time.Second, nil, func() bool {
		in = m.health(t, name)
		return in.Health != nil && in.Health.Status == status
	}) {
		t.Fatalf("machine %s never became %s: %+v", name, status, in.Health)
	}
	return in
}

// Proof (issue 14, health): after ready the image's HEALTHCHECK runs on
// its interval; a failing check makes the machine unhealthy after Retries
// failures (in list, list --json, show and a STATUS= line), a passing one
// healthy again; MAN8S_ON_UNHEALTHY=restart restarts the app inside the
// machine.
func TestHealthTransitions(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := healthImage(t, reg, "web", healthyApp)
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "web1")
	n := listenNotify(t)
	run := m.runNotified(t, "web1", n)
	waitFor(t, "READY=1", func() bool { _, _, ok := n.first("READY=1"); return ok })
	m.waitHealth(t, "web1", "healthy")
	if list := m.mustMbctl(t, "machines", "list"); !regexpMatch(`(?m)^NAME\s+STATE\s+HEALTH\s+IMAGE`, list) || !regexpMatch(`(?m)^web1\s+running\s+healthy\s+`, list) {
		t.Errorf("machines list:\n%s", list)
	}

	m.mustMbctl(t, "machines", "shell", "web1", "--", "rm", "/www/index.html")
	in := m.waitHealth(t, "web1", "unhealthy")
	if in.Health.FailingStreak < 2 || in.Health.LastExit == 0 || in.Health.LastCheck.IsZero() {
		t.Errorf("unhealthy state: %+v", in.Health)
	}
	if _, l, ok := n.first("STATUS=Container running: unhealthy"); !ok {
		t.Errorf("no unhealthy STATUS= line:\n%s", n)
	} else {
		t.Logf("nspawn forwarded %q", l)
	}
	if show := m.mustMbctl(t, "machines", "show", "web1"); !regexpMatch(`Health:\s+unhealthy \(ready since .*2 failed checks in a row; check HEALTHCHECK CMD-SHELL wget`, show) {
		t.Errorf("machines show:\n%s", show)
	}
	if !strings.Contains(run.output(), "man8s-init: health: unhealthy after 2 failed checks") {
		t.Errorf("man8s-init did not log the transition:\n%s", run.output())
	}

	m.mustMbctl(t, "machines", "shell", "web1", "--", "/bin/sh", "-c", "echo ok > /www/index.html")
	m.waitHealth(t, "web1", "healthy")
	if _, _, ok := n.first("STATUS=Container running: healthy"); !ok {
		t.Errorf("no healthy STATUS= line:\n%s", n)
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}

	// MAN8S_ON_UNHEALTHY=restart: the app is stopped and started again in
	// the same machine, which makes its index again.
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "web2", "--env", "MAN8S_ON_UNHEALTHY=restart")
	n2 := listenNotify(t)
	run = m.runNotified(t, "web2", n2)
	m.waitHealth(t, "web2", "healthy")
	leader := m.health(t, "web2").State.Leader
	m.mustMbctl(t, "machines", "shell", "web2", "--", "rm", "/www/index.html")
	waitFor(t, "the app's restart", func() bool { return strings.Count(run.output(), "app: serving") == 2 })
	in = m.waitHealth(t, "web2", "healthy")
	if in.Health.Restarts != 1 || in.State.Leader != leader {
		t.Errorf("after the restart: %+v (leader %d, was %d)", in.Health, in.State.Leader, leader)
	}
	if !strings.Contains(run.output(), "restarting the app (MAN8S_ON_UNHEALTHY=restart)") {
		t.Errorf("man8s-init did not log the restart:\n%s", run.output())
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}
}

// Proof (issue 14, MAN8S_ON_UNHEALTHY=stop): an app that turns unhealthy
// ends its machine with a failure status, so that systemd's Restart=
// policy acts.
func TestHealthStopEndsTheMachine(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := healthImage(t, reg, "webstop", healthyApp)
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "webstop1", "--env", "MAN8S_ON_UNHEALTHY=stop")
	n := listenNotify(t)
	run := m.runNotified(t, "webstop1", n)
	m.waitHealth(t, "webstop1", "healthy")
	m.mustMbctl(t, "machines", "shell", "webstop1", "--", "rm", "/www/index.html")
	code := run.wait(t)
	out := run.output()
	if code == 0 {
		t.Errorf("the unhealthy machine ended with status 0\n%s", out)
	}
	if !strings.Contains(out, "man8s-init: health: unhealthy after 2 failed checks: stopping the machine (MAN8S_ON_UNHEALTHY=stop)") {
		t.Errorf("man8s-init did not say why it stopped:\n%s", out)
	}
	if strings.Count(out, "app: serving") != 1 {
		t.Errorf("the app was started again:\n%s", out)
	}
}
