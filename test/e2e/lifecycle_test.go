package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/proc"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// machineHost is a testbed host set up for mbctl's machine verbs (see
// testbed.Mbctl).
type machineHost struct {
	*testbed.Host
	mb   *testbed.Mbctl
	work string
}

func newMachineHost(t *testing.T) *machineHost {
	t.Helper()
	testbed.RequireT(t, "systemd-nspawn", "nsenter", "unshare", busybox)
	return wrapMachineHost(t, testbed.NewHostT(t, testbed.Options{}))
}

// wrapMachineHost gives testbed host h its own mbctl configuration.
func wrapMachineHost(t *testing.T, h *testbed.Host) *machineHost {
	t.Helper()
	work := t.TempDir()
	mb, err := testbed.NewMbctl(h, bins.mbctl, work, "")
	if err != nil {
		t.Fatal(err)
	}
	return &machineHost{Host: h, mb: mb, work: work}
}

func (m *machineHost) mbctl(ctx context.Context, args ...string) *exec.Cmd {
	return m.mb.Command(ctx, args...)
}

func (m *machineHost) mustMbctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := m.mbctl(t.Context(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mbctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// quitApp prints its start, takes SIGQUIT as its stop signal (exit 0) and
// exits 7 on SIGUSR1.
const quitApp = `echo app started with APP_PORT=$APP_PORT
echo $$ > /tmp/app.pid
trap 'echo app got QUIT; exit 0' QUIT
trap 'echo app got USR1; exit 7' USR1
while true; do sleep 0.1; done`

// Proof (issue 4, lifecycle and shell): a pulled machine runs in the
// foreground in a testbed host; shell enters it (files of a config volume,
// the env file's variables), --network-only runs a host command in its
// network namespace; SIGTERM to `machines run` stops the machine the
// systemd way, the app gets its StopSignal, and its exit status is mbctl's.
func TestMachineRunShellStop(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/quit:1"
	script, err := ociimage.Layer(ociimage.File("app.sh", []byte(quitApp), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	app, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/app.sh"},
		Env:        []string{ociimage.DefaultPath, "APP_PORT=8080"},
		StopSignal: "SIGQUIT", Volumes: []string{"/var/lib/app", "/etc/app"},
	}, volumeLayer(t), script)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, app, ref)
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "quit1", "--volume", "/var/lib/app=data", "--volume", "/etc/app=config")

	run := m.startRun(t, "quit1")
	waitFor(t, "the app to start", func() bool { return strings.Contains(run.output(), "app started") })
	if !strings.Contains(run.output(), "APP_PORT=8080") {
		t.Errorf("the app did not get the image's env:\n%s", run.output())
	}
	show := m.mustMbctl(t, "machines", "show", "quit1")
	if !strings.Contains(show, "running (leader PID") {
		t.Errorf("show of the running machine:\n%s", show)
	}
	if got := m.mustMbctl(t, "machines", "shell", "quit1", "--", "cat", "/etc/app/app.conf"); got != "port=8080\n" {
		t.Errorf("shell cat of the config volume = %q", got)
	}
	if got := m.mustMbctl(t, "machines", "shell", "quit1", "--", "/bin/sh", "-c", "echo $MAN8S_CONTAINER_NAME $APP_PORT $(hostname)"); got != "quit1 8080 quit1\n" {
		t.Errorf("shell env and hostname = %q", got)
	}
	if got := m.mustMbctl(t, "machines", "shell", "--network-only", "quit1", "--", "ip", "-o", "link", "show"); !strings.Contains(got, "host0") {
		t.Errorf("--network-only ip link shows no host0:\n%s", got)
	}
	m.interactiveShell(t, "quit1")

	// Stopped the way systemd stops it: an orderly shutdown (status 0)
	// in which the app gets its StopSignal exactly once.
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d, want 0\n%s", code, run.output())
	}
	if strings.Count(run.output(), "app got QUIT") != 1 || strings.Contains(run.output(), "got USR1") {
		t.Errorf("the app did not get exactly one SIGQUIT:\n%s", run.output())
	}
	if list := m.mustMbctl(t, "machines", "list"); !strings.Contains(list, "stopped") {
		t.Errorf("list after stop:\n%s", list)
	}
	out, err := m.mbctl(t.Context(), "machines", "shell", "quit1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is not running") {
		t.Errorf("shell of a stopped machine: %v\n%s", err, out)
	}

	// An app that exits on its own: its status is mbctl's.
	run = m.startRun(t, "quit1")
	waitFor(t, "the app to start again", func() bool { return strings.Contains(run.output(), "app started") })
	m.mustMbctl(t, "machines", "shell", "quit1", "--", "/bin/sh", "-c", "kill -USR1 $(cat /tmp/app.pid)")
	if code := run.wait(t); code != 7 {
		t.Errorf("machines run of an app exiting 7: status %d\n%s", code, run.output())
	}
}

// interactiveShell uses `machines shell` on a terminal as a person would:
// the window size is the terminal's, Ctrl-C interrupts the inner program
// and not the shell, and the shell's exit status is mbctl's.
func (m *machineHost) interactiveShell(t *testing.T, name string) {
	t.Helper()
	term := openTerminal(t)
	if err := unix.IoctlSetWinsize(int(term.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	cmd := m.mbctl(t.Context(), "machines", "shell", name)
	done := term.start(t, cmd)
	term.typeLine(t, "echo size=$(stty size)")
	term.expect(t, "size=33 111")
	term.typeLine(t, "sleep 97")
	sleeping := func() bool {
		m, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range m {
			if b, err := os.ReadFile(p); err == nil && string(b) == "sleep\x0097\x00" {
				return true
			}
		}
		return false
	}
	waitFor(t, "sleep 97 to run in the machine", sleeping)
	if _, err := term.master.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	// sleep died of the Ctrl-C; the shell is still there and answers.
	term.expect(t, "^C")
	term.typeLine(t, "echo still=$((6*7))")
	term.expect(t, "still=42")
	if sleeping() {
		t.Error("Ctrl-C did not end the program running in the shell")
	}
	term.typeLine(t, "exit 3")
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("interactive shell exited with %v, want status 3\n%s", err, term.output())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the shell did not exit:\n%s", term.output())
	}
}

// runningMachine is a `mbctl machines run` in the background.
type runningMachine struct {
	cmd  *exec.Cmd
	out  *proc.Buffer
	done chan struct{}
	err  error
}

func (m *machineHost) startRun(t *testing.T, name string) *runningMachine {
	t.Helper()
	r := &runningMachine{out: &proc.Buffer{}, done: make(chan struct{})}
	r.cmd = m.mbctl(context.Background(), "machines", "run", name)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	// Its own process group: if the orderly stop hangs, the cleanup kills
	// mbctl and the systemd-nspawn it started together.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				t.Errorf("machine %s did not stop in 30s; killing mbctl and systemd-nspawn", name)
				syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
				<-r.done
			}
		}
	})
	return r
}

func (r *runningMachine) output() string { return r.out.String() }

// stop sends SIGTERM and returns the exit status.
func (r *runningMachine) stop(t *testing.T) int {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return r.wait(t)
}

// wait returns the exit status once the machine has stopped.
func (r *runningMachine) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the machine did not stop:\n%s", r.output())
	}
	if ee, ok := r.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return 0
}
