package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/host/machine"
)

// A user who is not root learns that the command needs root and how to
// run it, whether the failure was a permission error or a command mbctl
// handed the work to (systemctl's "Access denied"); root, and commands
// that fail for other reasons, get no such line.
func TestNeedsRootHint(t *testing.T) {
	env, root := machineDirs(t)
	writeTestFile(t, filepath.Join(root, "machines/web/bin/sh"), "")
	writeTestFile(t, filepath.Join(root, "configs/web/container.nspawn"), "[Exec]\n")
	writeTestFile(t, filepath.Join(root, "configs/web/man8env.env"), "MAN8S_CONTAINER_NAME=web\n")
	systemd := machine.HostInit{Systemd: true, Bus: true}
	for _, tt := range []struct {
		name     string
		euid     int
		code     int
		args     []string
		wantCode int
		want     string // "" : no hint
	}{
		{"start as a user", 1000, 1, []string{"machines", "start", "web"}, 1,
			"mbctl: mbctl machines start needs root (systemd starts, stops and enables machines for root), and mbctl runs as user 1000: run it as root: sudo mbctl machines start web"},
		{"run as a user", 1000, 1, []string{"machines", "run", "web"}, 1, "sudo mbctl machines run web"},
		{"start as root", 0, 1, []string{"machines", "start", "web"}, 1, ""},
		{"status as a user", 1000, 3, []string{"machines", "status", "web"}, 3, ""},
		{"start that works", 1000, 0, []string{"machines", "start", "web"}, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmds := &fakeCommands{host: systemd, code: tt.code}
			euid := tt.euid
			code, stderr := runWith(t, env, &Factory{Commands: cmds, Prober: noMachinesRun(t), Geteuid: func() int { return euid }}, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			if tt.want == "" && strings.Contains(stderr, "needs root") || tt.want != "" && !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want %q", stderr, tt.want)
			}
		})
	}
}
