package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// The probe's images: a busybox rootfs with one of these entrypoints.
var probeImages = []struct {
	name       string
	entrypoint []string
	files      map[string]string // path: content, mode 0755
	tini       bool              // Debian's tini-static at /usr/bin/tini
}{
	// A real init.
	{name: "tini", entrypoint: []string{"/usr/bin/tini", "--", "sleep", "1000"}, tini: true},
	// An app that knows nothing of signals.
	{name: "sleep", entrypoint: []string{"sleep", "1000"}},
	// A shell that traps TERM and exits.
	{name: "trap", entrypoint: []string{"/bin/sh", "/app.sh"}, files: map[string]string{
		"app.sh": "trap 'echo stopping; exit 0' TERM\nwhile true; do sleep 0.1; done\n"}},
	// A shell that ignores TERM.
	{name: "ignore", entrypoint: []string{"/bin/sh", "/app.sh"}, files: map[string]string{
		"app.sh": "trap '' TERM\nwhile true; do sleep 0.1; done\n"}},
	// Named tini, but a script that execs its arguments: sleep is PID 1.
	{name: "faketini", entrypoint: []string{"/usr/bin/tini", "--", "sleep", "1000"}, files: map[string]string{
		"usr/bin/tini": "#!/bin/sh\n[ \"$1\" = -- ] && shift\nexec \"$@\"\n"}},
	// Traps TERM and goes on: it never exits.
	{name: "stuck", entrypoint: []string{"/bin/sh", "/app.sh"}, files: map[string]string{
		"app.sh": "trap 'echo not stopping' TERM\nwhile true; do sleep 0.1; done\n"}},
}

// named drops the signals without a name (realtime ones given by number),
// which the test's own ancestors may have left ignored.
func named(sigs []string) []string {
	var out []string
	for _, s := range sigs {
		if strings.HasPrefix(s, "SIG") {
			out = append(out, s)
		}
	}
	return out
}

// pushProbeImages builds the probe's images and pushes them to reg;
// it returns their references by name.
func pushProbeImages(t *testing.T, reg *registry.Registry) map[string]string {
	t.Helper()
	refs := map[string]string{}
	for _, pi := range probeImages {
		var entries []ociimage.Entry
		if pi.tini {
			b, err := os.ReadFile(tiniHost)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, ociimage.File("usr/bin/tini", b, 0o755))
		}
		for p, c := range pi.files {
			entries = append(entries, ociimage.File(p, []byte(c), 0o755))
		}
		var layers []v1.Layer
		if len(entries) > 0 {
			l, err := ociimage.Layer(entries...)
			if err != nil {
				t.Fatal(err)
			}
			layers = append(layers, l)
		}
		img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{Entrypoint: pi.entrypoint}, layers...)
		if err != nil {
			t.Fatal(err)
		}
		refs[pi.name] = reg.Addr() + "/probe/" + pi.name + ":1"
		pushT(t, img, refs[pi.name])
	}
	return refs
}

// probeJSON is what the tests read of `oci inspect --probe --json`.
type probeJSON struct {
	Probe struct {
		StopSignal string   `json:"stop_signal"`
		Caught     []string `json:"caught"`
		Ignored    []string `json:"ignored"`
		Blocked    []string `json:"blocked"`
		SigWait    bool     `json:"sigwait"`
		Reaps      *bool    `json:"reaps"`
		Zombies    int      `json:"zombies"`
		Stop       struct {
			Signal string `json:"signal"`
			Sent   bool   `json:"sent"`
			Exited bool   `json:"exited"`
			MS     int64  `json:"ms"`
			Status *int   `json:"status"`
		} `json:"stop"`
		PID1       string  `json:"pid1"`
		PID1Reason string  `json:"pid1_reason"`
		Seconds    float64 `json:"duration_seconds"`
		Output     string  `json:"output"`
	} `json:"probe"`
	Init struct {
		Detected    string `json:"detected"`
		AutoMode    string `json:"auto_mode"`
		ModeReason  string `json:"mode_reason"`
		StopWarning string `json:"stop_warning"`
	} `json:"init"`
}

func (p probeJSON) String() string {
	f := p.Probe
	reaps := "not tested"
	if f.Reaps != nil {
		reaps = strconv.FormatBool(*f.Reaps)
	}
	stop := fmt.Sprintf("did not exit within %dms", f.Stop.MS)
	if f.Stop.Exited {
		st := "?"
		if f.Stop.Status != nil {
			st = strconv.Itoa(*f.Stop.Status)
		}
		stop = fmt.Sprintf("exited in %dms with status %s", f.Stop.MS, st)
	}
	return fmt.Sprintf("caught %v, ignored %v, blocked %v, sigwait %v; reaps %s (%d zombies); %s: %s; PID 1: %s (%s); init %s, auto %s (%s); warning %q; %.1fs",
		f.Caught, f.Ignored, f.Blocked, f.SigWait, reaps, f.Zombies, f.Stop.Signal, stop, f.PID1, f.PID1Reason,
		p.Init.Detected, p.Init.AutoMode, p.Init.ModeReason, p.Init.StopWarning, f.Seconds)
}

// checkNothingLeft fails unless the scratch dir of work holds nothing but
// an empty journal dir, and no process runs on a probe's dir of it.
func checkNothingLeft(t *testing.T, work string) {
	t.Helper()
	scratch := filepath.Join(work, "scratch")
	ents, _ := os.ReadDir(scratch)
	for _, e := range ents {
		if e.Name() != "journals" {
			t.Errorf("left in the scratch dir: %s", e.Name())
		}
	}
	if js, _ := os.ReadDir(filepath.Join(scratch, "journals")); len(js) > 0 {
		t.Errorf("journals left: %v", js)
	}
	for _, p := range processesNaming(scratch) {
		t.Errorf("a process still runs on the scratch dir: %d %s", p.pid, p.cmdline)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), scratch) {
		t.Errorf("a mount under %s is left", scratch)
	}
}

// hostProc identifies a process: its pid and start time (so that a reused
// pid is not taken for it).
type hostProc struct {
	pid     int
	start   string
	cmdline string
}

func procStart(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false // gone, or a zombie: it has exited
	}
	return f[19], true
}

func procInfo(pid int) (hostProc, bool) {
	start, ok := procStart(pid)
	if !ok {
		return hostProc{}, false
	}
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return hostProc{pid: pid, start: start, cmdline: strings.ReplaceAll(string(cl), "\x00", " ")}, true
}

// alive reports whether p still runs (not exited, not a zombie).
func (p hostProc) alive() bool {
	start, ok := procStart(p.pid)
	return ok && start == p.start
}

// processesNaming lists the running processes whose command line holds s.
func processesNaming(s string) []hostProc {
	ents, _ := os.ReadDir("/proc")
	var out []hostProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, ok := procInfo(pid); ok && strings.Contains(p.cmdline, s) {
			out = append(out, p)
		}
	}
	return out
}

// childrenOf lists the running children of pid.
func childrenOf(pid int) []hostProc {
	ents, _ := os.ReadDir("/proc")
	var out []hostProc
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if p, ok := procInfo(n); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

// probeMachine waits until mbctl (pid) runs the probe's systemd-nspawn and
// that runs the machine's PID 1, and returns both.
func probeMachine(t *testing.T, pid int) (nspawn, pid1 hostProc) {
	t.Helper()
	found := poll(30*time.Second, nil, func() bool {
		for _, c := range childrenOf(pid) {
			if !strings.Contains(c.cmdline, "systemd-nspawn") || !strings.Contains(c.cmdline, "--machine=mbctl-probe-") {
				continue
			}
			if kids := childrenOf(c.pid); len(kids) == 1 {
				nspawn, pid1 = c, kids[0]
				return true
			}
		}
		return false
	})
	if !found {
		t.Fatalf("mbctl (pid %d) never ran the probe's machine", pid)
	}
	return nspawn, pid1
}

// Proof (issue 12, init probe): oci inspect --probe of six images. tini
// takes SIGTERM (waiting in sigtimedwait), reaps the child it adopts and
// exits 143 on SIGTERM: it behaves as PID 1, and auto would exec it as PID
// 1. sleep as PID 1 catches nothing, reaps nothing and stays after SIGTERM.
// A shell trapping TERM catches it and exits 0, but is no init: supervised.
// A shell ignoring TERM gets the warning. A script named tini is judged by
// what it does. Nothing of any probe is left.
func TestProbeFindings(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox, tiniHost)
	reg := registry.StartT(t, registry.Options{})
	refs := pushProbeImages(t, reg)
	has := func(list []string, s string) bool { return slices.Contains(list, s) }
	tests := []struct {
		name  string
		check func(t *testing.T, p probeJSON)
	}{
		{"tini", func(t *testing.T, p probeJSON) {
			f := p.Probe
			if !(f.SigWait || has(f.Caught, "SIGTERM") || has(f.Blocked, "SIGTERM")) || f.Reaps == nil || !*f.Reaps ||
				!f.Stop.Exited || f.Stop.Status == nil || *f.Stop.Status != 143 || f.PID1 != "yes" {
				t.Errorf("tini: %s", p)
			}
			if p.Init.Detected != "tini" || p.Init.AutoMode != "exec-pid1" || p.Init.StopWarning != "" {
				t.Errorf("tini: %s", p)
			}
		}},
		{"sleep", func(t *testing.T, p probeJSON) {
			f := p.Probe
			if len(f.Caught) != 0 || len(named(f.Ignored)) != 0 || f.SigWait || f.Reaps == nil || *f.Reaps || f.Zombies != 1 ||
				f.Stop.Exited || f.PID1 != "no" || !strings.Contains(f.PID1Reason, "does not handle SIGTERM") {
				t.Errorf("sleep: %s", p)
			}
			// Supervised, sleep dies of SIGTERM: nothing to warn about.
			if p.Init.AutoMode != "supervise" || p.Init.StopWarning != "" {
				t.Errorf("sleep: %s", p)
			}
		}},
		{"trap", func(t *testing.T, p probeJSON) {
			f := p.Probe
			if !has(f.Caught, "SIGTERM") || !f.Stop.Exited || f.Stop.Status == nil || *f.Stop.Status != 0 || f.PID1 != "yes" ||
				!strings.Contains(f.Output, "stopping") {
				t.Errorf("trap: %s", p)
			}
			if p.Init.Detected != "none" || p.Init.AutoMode != "supervise" || p.Init.StopWarning != "" {
				t.Errorf("trap: %s", p)
			}
		}},
		{"ignore", func(t *testing.T, p probeJSON) {
			f := p.Probe
			if !has(f.Ignored, "SIGTERM") || has(f.Caught, "SIGTERM") || f.Stop.Exited || f.PID1 != "no" {
				t.Errorf("ignore: %s", p)
			}
			if p.Init.AutoMode != "supervise" || !strings.Contains(p.Init.StopWarning, "the app ignores SIGTERM, its stop signal: a stop will kill it after MAN8S_STOP_TIMEOUT") {
				t.Errorf("ignore: %s", p)
			}
		}},
		{"faketini", func(t *testing.T, p probeJSON) {
			if p.Init.Detected != "tini" || p.Probe.PID1 != "no" || p.Init.AutoMode != "supervise" ||
				!strings.Contains(p.Init.ModeReason, "the probe shows it does not behave as PID 1 should") {
				t.Errorf("faketini: %s", p)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			work := t.TempDir()
			conf := writeConfig(t, work, "[machines]\nbusybox = \""+busybox+"\"\n")
			start := time.Now()
			out := mustMbctl(t, conf, "oci", "inspect", "--probe", "--json", refs[tt.name])
			var p probeJSON
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &p); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			t.Logf("%s (%.1fs with the download): %s", tt.name, time.Since(start).Seconds(), p)
			tt.check(t, p)
			if p.Probe.Seconds > 10 {
				t.Errorf("the probe took %.1fs, more than its bound", p.Probe.Seconds)
			}
			checkNothingLeft(t, work)
		})
	}
	t.Run("human", func(t *testing.T) {
		t.Parallel()
		work := t.TempDir()
		conf := writeConfig(t, work, "[machines]\nbusybox = \""+busybox+"\"\n")
		out := mustMbctl(t, conf, "oci", "inspect", "--probe", refs["ignore"])
		for _, want := range []string{
			"Probe (the entrypoint as PID 1, ",
			"Caught signals:   SIGINT, SIGCHLD\n",
			// Realtime signals an ancestor ignored stay ignored across
			// exec (signal 32 under make in CI): only the named ones count.
			"Ignored signals:  SIGQUIT, SIGTERM",
			"Reaps:            yes: an adopted child was reaped ",
			"Stop (SIGTERM):   did not exit within ",
			"As PID 1:         no: it does not handle SIGTERM: as PID 1 the kernel drops it\n",
			"Auto mode:        supervise: auto: no init detected",
			"Warning:          the app ignores SIGTERM, its stop signal",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("oci inspect --probe lacks %q:\n%s", want, out)
			}
		}
		checkNothingLeft(t, work)
	})
}

// Proof (issue 12, init probe at pull): auto runs tini as PID 1 when the
// probe says it behaves, and supervises it with --no-probe and when a
// "tini" does not behave; the pull warns when a stop will not end the app
// (sleep as PID 1 in exec-pid1 mode, a shell that ignores TERM), and says
// nothing for sleep supervised, which SIGTERM ends.
func TestProbePullChoosesMode(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox, tiniHost)
	reg := registry.StartT(t, registry.Options{})
	refs := pushProbeImages(t, reg)
	work := t.TempDir()
	conf := machineConfig(t, work, "[machines]\nbusybox = \""+busybox+"\"\n")
	tests := []struct {
		name, image string
		flags       []string
		mode        string
		want        []string
		warning     string // "" for none
	}{
		{"tini", "tini", nil, "exec-pid1", []string{"mode exec-pid1: auto: the probe shows tini behaves as PID 1 should", "Probe: as PID 1 it behaves"}, ""},
		{"tini-no-probe", "tini", []string{"--no-probe"}, "supervise", []string{"mode supervise: auto: tini runs fine under man8s-init's supervisor"}, ""},
		{"faketini", "faketini", nil, "supervise", []string{"the probe shows it does not behave as PID 1 should (it does not handle SIGTERM"}, ""},
		{"sleep", "sleep", nil, "supervise", []string{"Probe: as PID 1 it does not behave"}, ""},
		{"sleep-pid1", "sleep", []string{"--init-mode", "exec-pid1"}, "exec-pid1", []string{"the probe: as PID 1 it does not handle SIGTERM"},
			"warning: as PID 1 the app does not handle SIGTERM, which stops it in exec-pid1 mode"},
		{"ignore", "ignore", nil, "supervise", nil, "warning: the app ignores SIGTERM, its stop signal: a stop will kill it after MAN8S_STOP_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"machines", "pull", "--yes", "--quiet", refs[tt.image], "probe-" + tt.name}, tt.flags...)
			out := mustMbctl(t, conf, args...)
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("pull output lacks %q:\n%s", want, out)
				}
			}
			if tt.warning == "" && strings.Contains(out, "warning:") || !strings.Contains(out, tt.warning) {
				t.Errorf("pull output, want warning %q:\n%s", tt.warning, out)
			}
			env := readFileT(t, filepath.Join(work, "configs", "probe-"+tt.name, "man8env.env"))
			if !strings.Contains(env, "MAN8S_INIT_MODE="+tt.mode+"\n") {
				t.Errorf("man8env.env, want mode %s:\n%s", tt.mode, env)
			}
			if tt.name == "tini" {
				settings := readFileT(t, filepath.Join(work, "configs", "probe-tini", "container.nspawn"))
				if !strings.Contains(settings, "ProcessTwo=no\n") || !strings.Contains(settings, "KillSignal=SIGTERM\n") {
					t.Errorf("container.nspawn of tini in exec-pid1 mode:\n%s", settings)
				}
			}
			// The probe ran on an overlay: the machine's rootfs is the
			// image's, with what the pull installs, and no trace of a run.
			rootfs := filepath.Join(work, "machines", "probe-"+tt.name)
			if _, err := os.Stat(filepath.Join(rootfs, "man8env.env")); err == nil {
				t.Error("the probe's /man8env.env is in the machine's rootfs")
			}
			checkNothingLeft(t, work)
		})
	}
	// --json carries the findings.
	out := mustMbctl(t, conf, "machines", "pull", "--yes", "--quiet", "--json", refs["tini"], "probe-json")
	var rep struct {
		Init struct {
			Mode  string          `json:"mode"`
			Probe json.RawMessage `json:"probe"`
		} `json:"init"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Init.Mode != "exec-pid1" || !strings.Contains(string(rep.Init.Probe), `"pid1": "yes"`) {
		t.Errorf("pull --json: %s", out)
	}

	// An upgrade probes the new image too: the tini machine stays in
	// exec-pid1 mode (the name list alone would supervise it).
	tini, err := os.ReadFile(tiniHost)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ociimage.Layer(ociimage.File("usr/bin/tini", tini, 0o755), ociimage.File("etc/version", []byte("2\n"), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	next, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{Entrypoint: []string{"/usr/bin/tini", "--", "sleep", "2000"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, next, refs["tini"])
	if out := mustMbctl(t, conf, "machines", "upgrade", "--yes", "--quiet", "probe-tini"); !strings.Contains(out, "Upgraded machine probe-tini") {
		t.Errorf("upgrade:\n%s", out)
	}
	if env := readFileT(t, filepath.Join(work, "configs", "probe-tini", "man8env.env")); !strings.Contains(env, "MAN8S_INIT_MODE=exec-pid1\n") {
		t.Errorf("after the upgrade, man8env.env:\n%s", env)
	}
	checkNothingLeft(t, work)
}

// Proof (issue 12, the probe's bound): an app that takes SIGTERM and never
// exits is killed when --probe-timeout is up: mbctl fails within the
// bound, and neither the probe's nspawn nor its PID 1 nor its dirs are left.
func TestProbeTimeoutLeavesNothing(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	reg := registry.StartT(t, registry.Options{})
	refs := pushProbeImages(t, reg)
	work := t.TempDir()
	conf := writeConfig(t, work, "[machines]\nbusybox = \""+busybox+"\"\n")
	// The download first, so that the bound is the probe's alone.
	mustMbctl(t, conf, "oci", "download", "--quiet", refs["stuck"], filepath.Join(t.TempDir(), "rootfs"))

	cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "oci", "inspect", "--probe", "--probe-timeout", "2s", refs["stuck"])
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nspawn, pid1 := probeMachine(t, cmd.Process.Pid)
	err := cmd.Wait()
	took := time.Since(start)
	if err == nil || !strings.Contains(out.String(), "the probe timed out after 2s") {
		t.Errorf("oci inspect --probe of an app that never exits: %v, want the timeout\n%s", err, out.String())
	}
	// 2s of probe, then the machine's orderly stop.
	if took > 8*time.Second {
		t.Errorf("mbctl took %s with --probe-timeout 2s", took)
	}
	for _, p := range []hostProc{nspawn, pid1} {
		if p.alive() {
			t.Errorf("still running after the probe: %d %s", p.pid, p.cmdline)
		}
	}
	checkNothingLeft(t, work)
}

// Proof (issue 12, kill -9 during the probe): mbctl killed while the
// probe's machine runs, in oci inspect --probe and in machines pull: the
// machine goes with it (nspawn's parent death signal), and the next mbctl
// run takes back the probe's dirs from the journal.
func TestProbeKilledLeavesNothing(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	reg := registry.StartT(t, registry.Options{})
	refs := pushProbeImages(t, reg)
	for _, tc := range []struct {
		name string
		args []string
		run  string // the dead run, as host clean names it
	}{
		{"inspect", []string{"oci", "inspect", "--probe", refs["sleep"]}, "oci inspect --probe " + refs["sleep"]},
		{"pull", []string{"machines", "pull", "--yes", "--quiet", refs["sleep"], "cut"}, "machines pull cut"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			conf := machineConfig(t, work, "[machines]\nbusybox = \""+busybox+"\"\n")
			cmd := startPaused(t, conf, "probe:running", tc.args...)
			nspawn, pid1 := probeMachine(t, cmd.Process.Pid)
			kill9(t, cmd)
			gone := func() bool { return !nspawn.alive() && !pid1.alive() }
			if !poll(15*time.Second, nil, gone) {
				t.Fatalf("the probe's machine outlived mbctl's kill -9: %v %v", nspawn, pid1)
			}
			probes, _ := filepath.Glob(filepath.Join(work, "scratch", "probe-*"))
			if len(probes) == 0 {
				t.Fatal("no probe dir left by the killed run: the fault point is not where it claims")
			}
			out := mustMbctl(t, conf, "host", "clean")
			if !strings.Contains(out, tc.run) {
				t.Errorf("host clean does not name the dead run %q:\n%s", tc.run, out)
			}
			checkNothingLeft(t, work)
			if _, err := os.Stat(filepath.Join(work, "machines", "cut")); err == nil {
				t.Error("the killed pull left a machine")
			}
		})
	}
}
