package imageinit

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/man8s/mbctl/internal/host/provision/probe"
)

// tree builds a rootfs in a temp dir: "path" -> content makes a file,
// "path/" a directory, "path" -> "@target" a symbolic link.
func tree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, c := range entries {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(c, "@"):
			err = os.Symlink(c[1:], full)
		default:
			err = os.WriteFile(full, []byte(c), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		argv     []string
		want     Kind
		evidence string
	}{
		{"empty argv", nil, nil, None, "no entrypoint or cmd"},
		{"plain app", map[string]string{"docker-entrypoint.sh": "#!/bin/sh"}, []string{"/docker-entrypoint.sh", "nginx"}, None, `entrypoint "/docker-entrypoint.sh" is no known init`},
		{"tini absolute", map[string]string{"sbin/tini": "elf"}, []string{"/sbin/tini", "--", "app"}, Tini, `entrypoint "/sbin/tini" (tini)`},
		{"tini at /tini", map[string]string{"tini": "elf"}, []string{"/tini", "--", "app"}, Tini, `entrypoint "/tini" (tini)`},
		{"tini in /usr/bin by bare name", map[string]string{"usr/bin/tini": "elf"}, []string{"tini", "app"}, Tini, `entrypoint "tini" -> /usr/bin/tini (tini)`},
		{"tini-static", map[string]string{"usr/local/bin/tini-static": "elf"}, []string{"/usr/local/bin/tini-static", "-g", "--"}, Tini, "(tini)"},
		{"tini link to tini-static", map[string]string{"usr/bin/tini-static": "elf", "usr/bin/tini": "@tini-static"}, []string{"/usr/bin/tini"}, Tini, "(tini)"},
		{"tini missing from rootfs is judged by name", nil, []string{"/sbin/tini", "app"}, Tini, "(tini)"},
		{"docker-init", map[string]string{"usr/bin/docker-init": "elf"}, []string{"docker-init", "--", "x"}, Tini, "(tini)"},
		{"dumb-init", map[string]string{"usr/bin/dumb-init": "elf"}, []string{"/usr/bin/dumb-init", "--", "app"}, DumbInit, "(dumb-init)"},
		{"dumb-init versioned", map[string]string{"dumb-init_1.2.5_x86_64": "elf"}, []string{"/dumb-init_1.2.5_x86_64", "app"}, DumbInit, "(dumb-init)"},
		{"app behind a link named like dumb-init", map[string]string{"usr/local/bin/init": "@dumb-init", "usr/local/bin/dumb-init": "elf"}, []string{"/usr/local/bin/init"}, DumbInit, `-> /usr/local/bin/dumb-init (dumb-init)`},
		{"catatonit", map[string]string{"usr/bin/catatonit": "elf"}, []string{"/usr/bin/catatonit", "--", "app"}, Catatonit, "(catatonit)"},
		{"s6-overlay v3", map[string]string{"init": "#!/bin/sh", "package/admin/s6-overlay-3.1.6.2/": "", "command/": ""}, []string{"/init"}, S6Overlay, `entrypoint "/init" with /package/admin/s6-overlay-3.1.6.2 (s6-overlay)`},
		{"s6-overlay by /command", map[string]string{"init": "#!/bin/sh", "command/": ""}, []string{"/init", "nginx"}, S6Overlay, "with /command"},
		{"/init without s6", map[string]string{"init": "#!/bin/sh"}, []string{"/init"}, None, "no known init"},
		{"systemd via /sbin/init relative link", map[string]string{"lib/systemd/systemd": "elf", "sbin/init": "@../lib/systemd/systemd"}, []string{"/sbin/init"}, Systemd, `entrypoint "/sbin/init" -> /lib/systemd/systemd (systemd)`},
		{"systemd via merged /usr", map[string]string{"usr/lib/systemd/systemd": "elf", "usr/sbin/init": "@../lib/systemd/systemd", "sbin": "@usr/sbin", "lib": "@usr/lib"}, []string{"/sbin/init"}, Systemd, "-> /usr/lib/systemd/systemd (systemd)"},
		{"systemd absolute link stays in rootfs", map[string]string{"usr/lib/systemd/systemd": "elf", "sbin/init": "@/usr/lib/systemd/systemd"}, []string{"/sbin/init"}, Systemd, "-> /usr/lib/systemd/systemd (systemd)"},
		{"systemd direct", map[string]string{"lib/systemd/systemd": "elf"}, []string{"/lib/systemd/systemd", "--log-level=info"}, Systemd, "(systemd)"},
		{"busybox init is none", map[string]string{"bin/busybox": "elf", "sbin/init": "@../bin/busybox"}, []string{"/sbin/init"}, None, `-> /bin/busybox is no known init`},
		{"runit", map[string]string{"sbin/runit-init": "elf"}, []string{"/sbin/runit-init"}, Runit, "(runit)"},
		{"runsvdir", map[string]string{"usr/bin/runsvdir": "elf"}, []string{"runsvdir", "-P", "/etc/service"}, Runit, "(runit)"},
		{"supervisord", map[string]string{"usr/bin/supervisord": "#!/usr/bin/python3"}, []string{"/usr/bin/supervisord", "-n", "-c", "/etc/supervisord.conf"}, Supervisord, "(supervisord)"},
		{"supervisord by python", nil, []string{"python3", "/usr/local/bin/supervisord", "-n"}, Supervisord, `runs "/usr/local/bin/supervisord" (supervisord)`},
		{"supervisord as module", nil, []string{"/usr/bin/python", "-m", "supervisor.supervisord"}, Supervisord, "(supervisord)"},
		{"sh -c exec tini", map[string]string{"sbin/tini": "elf"}, []string{"/bin/sh", "-c", "exec /sbin/tini -- app"}, Tini, `entrypoint "/sbin/tini" (run by /bin/sh -c) (tini)`},
		{"sh -c with expansion is none", nil, []string{"sh", "-c", "exec $INIT app"}, None, "no known init"},
		{"sh -c with a list is none", nil, []string{"sh", "-c", "setup; exec tini app"}, None, "no known init"},
		{"escape attempt resolves inside rootfs", map[string]string{"sbin/init": "@../../../../../usr/lib/systemd/systemd"}, []string{"/sbin/init"}, None, "no known init"},
		{"link loop", map[string]string{"a": "@b", "b": "@a"}, []string{"/a"}, None, "no known init"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tree(t, tt.files)
			got, err := Detect(root, tt.argv)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tt.want || !strings.Contains(got.Evidence, tt.evidence) {
				t.Errorf("Detect(%q) = %+v, want kind %s with evidence containing %q", tt.argv, got, tt.want, tt.evidence)
			}
		})
	}
}

// A systemd on the host must not be found through a link that points out of
// the rootfs.
func TestDetectNeverLeavesRootfs(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "systemd"), []byte("elf"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := tree(t, map[string]string{"sbin/init": "@" + filepath.Join(outside, "systemd")})
	got, err := Detect(root, []string{"/sbin/init"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != None {
		t.Errorf("Detect followed a link out of the rootfs: %+v", got)
	}
}

func TestDetectMissingRootfs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := Detect(missing, []string{"/app"})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Detect on a missing rootfs = %v, want an error naming it", err)
	}
}

func TestDetectSymlinkedRootfs(t *testing.T) {
	root := tree(t, map[string]string{"lib/systemd/systemd": "elf", "sbin/init": "@../lib/systemd/systemd"})
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	got, err := Detect(link, []string{"/sbin/init"})
	if err != nil || got.Kind != Systemd {
		t.Errorf("Detect through a linked rootfs = %+v, %v; want systemd", got, err)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Auto, "auto": Auto, "supervise": Supervise, "exec-pid1": ExecPID1} {
		got, err := ParseMode(in)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Supervise", "pid1", "exec_pid1"} {
		_, err := ParseMode(in)
		if err == nil || !strings.Contains(err.Error(), "auto, supervise, exec-pid1") {
			t.Errorf("ParseMode(%q) = %v, want an error listing the modes", in, err)
		}
	}
}

func TestChooseAndKillSignal(t *testing.T) {
	tests := []struct {
		requested Mode
		kind      Kind
		want      Mode
		reason    string
		kill      string
	}{
		{Auto, None, Supervise, "auto: no init detected", "SIGRTMIN+3"},
		{"", "", Supervise, "auto: no init detected", "SIGRTMIN+3"},
		{Auto, Tini, Supervise, "auto: tini runs fine", "SIGRTMIN+3"},
		{Auto, DumbInit, Supervise, "auto: dumb-init", "SIGRTMIN+3"},
		{Auto, Catatonit, Supervise, "auto: catatonit", "SIGRTMIN+3"},
		{Auto, Runit, Supervise, "auto: runit", "SIGRTMIN+3"},
		{Auto, Supervisord, Supervise, "auto: supervisord", "SIGRTMIN+3"},
		{Auto, S6Overlay, ExecPID1, "auto: s6-overlay must run as PID 1", "SIGTERM"},
		{Auto, Systemd, ExecPID1, "auto: systemd must run as PID 1", "SIGRTMIN+3"},
		{Supervise, Systemd, Supervise, "supervise requested explicitly (detected init: systemd); systemd normally needs exec-pid1", "SIGRTMIN+3"},
		{ExecPID1, None, ExecPID1, "exec-pid1 requested explicitly (detected init: none)", "SIGTERM"},
		{ExecPID1, Tini, ExecPID1, "exec-pid1 requested explicitly (detected init: tini)", "SIGTERM"},
	}
	for _, tt := range tests {
		d := Detection{Kind: tt.kind}
		mode, reason := Choose(tt.requested, d, nil)
		if mode != tt.want || !strings.Contains(reason, tt.reason) {
			t.Errorf("Choose(%q, %s) = %q, %q; want %q, %q", tt.requested, tt.kind, mode, reason, tt.want, tt.reason)
		}
		if got := KillSignal(mode, d); got != tt.kill {
			t.Errorf("KillSignal(%q, %s) = %q, want %q", mode, tt.kind, got, tt.kill)
		}
	}
}

// Findings of probes, as the e2e images give them.
var (
	// tini: waits in sigtimedwait, exits on SIGTERM, reaps.
	tiniFindings = probe.Findings{StopSignal: syscall.SIGTERM, Ignored: set(syscall.SIGTTIN, syscall.SIGTTOU), SigWait: true,
		Reap: probe.Reap{Tested: true, Reaped: true}, Stop: probe.Stop{Sent: true, Signal: syscall.SIGTERM, Exited: true, Status: 143}}
	// sleep as PID 1: nothing caught, nothing reaped, the stop dropped.
	sleepFindings = probe.Findings{StopSignal: syscall.SIGTERM,
		Reap: probe.Reap{Tested: true, Zombies: 1}, Stop: probe.Stop{Sent: true, Signal: syscall.SIGTERM}}
	// A shell that traps TERM.
	trapFindings = probe.Findings{StopSignal: syscall.SIGTERM, Caught: set(syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD), Ignored: set(syscall.SIGQUIT),
		Reap: probe.Reap{Tested: true, Reaped: true}, Stop: probe.Stop{Sent: true, Signal: syscall.SIGTERM, Exited: true}}
	// A shell that ignores TERM.
	ignoreFindings = probe.Findings{StopSignal: syscall.SIGTERM, Caught: set(syscall.SIGINT, syscall.SIGCHLD), Ignored: set(syscall.SIGQUIT, syscall.SIGTERM),
		Reap: probe.Reap{Tested: true, Reaped: true}, Stop: probe.Stop{Sent: true, Signal: syscall.SIGTERM}}
)

func set(sigs ...syscall.Signal) probe.SignalSet {
	var s probe.SignalSet
	for _, sig := range sigs {
		s |= 1 << (sig - 1)
	}
	return s
}

func with(f probe.Findings, change func(*probe.Findings)) *probe.Findings {
	change(&f)
	return &f
}

func TestChooseWithFindings(t *testing.T) {
	quitInit := with(tiniFindings, func(f *probe.Findings) {
		f.StopSignal, f.Stop.Signal = syscall.SIGQUIT, syscall.SIGQUIT
	})
	tests := []struct {
		name      string
		requested Mode
		kind      Kind
		f         *probe.Findings
		want      Mode
		reason    string
	}{
		{"tini behaves", Auto, Tini, &tiniFindings, ExecPID1, "auto: the probe shows tini behaves as PID 1 should (it handles SIGTERM and reaps the children it adopts)"},
		{"tini without a probe", Auto, Tini, nil, Supervise, "auto: tini runs fine under man8s-init's supervisor"},
		{"a tini that is sleep", Auto, Tini, &sleepFindings, Supervise, "the probe shows it does not behave as PID 1 should (it does not handle SIGTERM: as PID 1 the kernel drops it)"},
		{"dumb-init that does not reap", Auto, DumbInit, with(tiniFindings, func(f *probe.Findings) { f.Reap.Reaped = false }), Supervise,
			"leaves the children it adopts as zombies"},
		{"reaping not tested", Auto, Catatonit, with(tiniFindings, func(f *probe.Findings) { f.Reap.Tested = false }), Supervise,
			"could not tell how it behaves as PID 1: it handles SIGTERM; whether it reaps could not be tested"},
		{"exited by itself", Auto, Tini, with(tiniFindings, func(f *probe.Findings) { f.Early = &probe.Exit{Status: 1} }), Supervise,
			"the app exited by itself 0ms after it started with status 1"},
		{"stop signal exec-pid1 would not send", Auto, Tini, quitInit, Supervise,
			"its stop signal is SIGQUIT and in exec-pid1 mode a stop sends it SIGTERM"},
		{"a shell that behaves is still no init", Auto, None, &trapFindings, Supervise, "auto: no init detected"},
		{"systemd stays exec-pid1", Auto, Systemd, &sleepFindings, ExecPID1, "auto: systemd must run as PID 1, so man8s-init sets up and execs it; the probe: as PID 1 it does not handle SIGTERM"},
		{"explicit exec-pid1 of sleep", ExecPID1, None, &sleepFindings, ExecPID1, "exec-pid1 requested explicitly (detected init: none); the probe: as PID 1 it does not handle SIGTERM"},
		{"explicit supervise of tini", Supervise, Tini, &tiniFindings, Supervise, "supervise requested explicitly (detected init: tini)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode, reason := Choose(tt.requested, Detection{Kind: tt.kind}, tt.f)
			if mode != tt.want || !strings.Contains(reason, tt.reason) {
				t.Errorf("Choose = %q, %q; want %q, %q", mode, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestStopWarning(t *testing.T) {
	winch := with(trapFindings, func(f *probe.Findings) { f.StopSignal = syscall.SIGWINCH; f.Caught = 0 })
	tests := []struct {
		name string
		mode Mode
		kind Kind
		f    *probe.Findings
		want string // "" for none
	}{
		{"no probe", ExecPID1, None, nil, ""},
		{"sleep supervised dies of SIGTERM", Supervise, None, &sleepFindings, ""},
		{"sleep as PID 1", ExecPID1, None, &sleepFindings, "as PID 1 the app does not handle SIGTERM, which stops it in exec-pid1 mode"},
		{"trap TERM as PID 1", ExecPID1, None, &trapFindings, ""},
		{"ignores TERM supervised", Supervise, None, &ignoreFindings, "the app ignores SIGTERM, its stop signal: a stop will kill it after MAN8S_STOP_TIMEOUT"},
		{"ignores TERM as PID 1", ExecPID1, None, &ignoreFindings, "does not handle SIGTERM"},
		{"tini as PID 1 waits for signals", ExecPID1, Tini, &tiniFindings, ""},
		{"an unhandled SIGWINCH ends nothing", Supervise, None, winch, "the app neither handles nor is ended by SIGWINCH"},
		{"exited by itself: nothing to say", ExecPID1, None, with(sleepFindings, func(f *probe.Findings) { f.Early = &probe.Exit{} }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StopWarning(tt.mode, Detection{Kind: tt.kind}, tt.f)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("StopWarning = %q, want %q", got, tt.want)
			}
		})
	}
}
