package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/proc"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// notifySocket is a unixgram socket standing in for systemd's notify
// socket: systemd-nspawn started with NOTIFY_SOCKET naming it sends its
// sd_notify messages here.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at    time.Time
	pid   int32
	lines []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify")}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.conn.Close() })
	raw, err := n.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := notifyMsg{at: time.Now(), lines: strings.Split(strings.TrimRight(string(buf[:nb]), "\n"), "\n")}
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil {
				for _, c := range cmsgs {
					if cred, err := unix.ParseUnixCredentials(&c); err == nil {
						m.pid = cred.Pid
					}
				}
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, m)
			n.mu.Unlock()
		}
	}()
	return n
}

// first returns the first message holding line (prefix match), if any.
func (n *notifySocket) first(prefix string) (notifyMsg, string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		for _, l := range m.lines {
			if strings.HasPrefix(l, prefix) {
				return m, l, true
			}
		}
	}
	return notifyMsg{}, "", false
}

func (n *notifySocket) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, m := range n.msgs {
		fmt.Fprintf(&b, "%s pid %d: %s\n", m.at.Format("15:04:05.000"), m.pid, strings.Join(m.lines, " | "))
	}
	return b.String()
}

// runNotified is `mbctl machines run NAME` with NOTIFY_SOCKET set for the
// systemd-nspawn it starts, as systemd sets it for systemd-nspawn@.service.
func (m *machineHost) runNotified(t *testing.T, name string, n *notifySocket) *runningMachine {
	t.Helper()
	r := &runningMachine{out: &proc.Buffer{}, done: make(chan struct{})}
	r.cmd = m.mbctl(context.Background(), "machines", "run", name)
	if r.cmd.Env == nil {
		r.cmd.Env = os.Environ()
	}
	r.cmd.Env = append(r.cmd.Env, "NOTIFY_SOCKET="+n.path)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
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
		if t.Failed() {
			t.Logf("machine %s console:\n%s\nnotify messages:\n%s", name, r.output(), n)
		}
	})
	return r
}

// slowApp opens its port 2 s after it starts (busybox httpd).
const slowApp = `echo "app: starting, port in 2s"
mkdir -p /www && echo ok > /www/index.html
sleep 2
echo "app: opening port 8080"
exec httpd -f -p 8080 -h /www
`

// healthImage pushes a busybox image whose app is script and whose
// HEALTHCHECK fetches http://127.0.0.1:8080/ (1 s interval, 2 retries).
func healthImage(t *testing.T, reg *registry.Registry, name, script string) string {
	t.Helper()
	ref := reg.Addr() + "/apps/" + name + ":1"
	layer, err := ociimage.Layer(ociimage.File("app.sh", []byte(script), 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "/app.sh"},
		Healthcheck: &v1.HealthConfig{
			Test:     []string{"CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"},
			Interval: time.Second, Timeout: 2 * time.Second, Retries: 2,
		},
	}, layer)
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, img, ref)
	return ref
}

// Proof (issue 14, readiness): a machine pulled with the default template
// (ProcessTwo=yes, NotifyReady=yes) from an image whose app opens its port
// 2 s after it starts and whose HEALTHCHECK fetches that port: nspawn
// forwards READY=1 only after the HEALTHCHECK passed, never before, and
// the STATUS= lines of man8s-init arrive. man8s-init is PID 2; its
// messages name PID 1 (SCM_CREDENTIALS), which nspawn requires.
func TestReadyAfterHealthcheck(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := healthImage(t, reg, "slow", slowApp)
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "slow1")
	settings, err := os.ReadFile(filepath.Join(m.work, "configs/slow1/container.nspawn"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nProcessTwo=yes\n", "\nNotifyReady=yes\n"} {
		if !strings.Contains(string(settings), want) {
			t.Fatalf("settings lack %q:\n%s", want, settings)
		}
	}
	env, _ := os.ReadFile(filepath.Join(m.work, "configs/slow1/man8env.env"))
	if !strings.Contains(string(env), "\nMAN8S_HEALTHCHECK=CMD-SHELL wget -q -O /dev/null http://127.0.0.1:8080/\n") ||
		!strings.Contains(string(env), "\nMAN8S_HEALTHCHECK_INTERVAL=1s\n") || !strings.Contains(string(env), "\nMAN8S_HEALTHCHECK_RETRIES=2\n") {
		t.Fatalf("the image's HEALTHCHECK is not in man8env.env:\n%s", env)
	}

	n := listenNotify(t)
	start := time.Now()
	run := m.runNotified(t, "slow1", n)
	var ready notifyMsg
	waitFor(t, "READY=1", func() bool {
		var ok bool
		ready, _, ok = n.first("READY=1")
		return ok
	})
	out := run.output()
	if took := ready.at.Sub(start); took < 2*time.Second {
		t.Errorf("READY=1 after %s, before the app opened its port (2 s)\n%s\n%s", took, out, n)
	}
	if !strings.Contains(out, "app: opening port 8080") {
		t.Errorf("READY=1 arrived before the app opened its port:\n%s\n%s", out, n)
	}
	// No time in the pattern: a loaded CI machine takes longer than the
	// app's 2 s (the order is what matters, checked above).
	if !regexpMatch(`man8s-init: ready: ready after [0-9.]+m?s \(HEALTHCHECK CMD-SHELL wget`, out) {
		t.Errorf("man8s-init did not log the readiness:\n%s", out)
	}
	for _, want := range []string{"STATUS=Container running: starting: waiting up to", "STATUS=Container running: ready after"} {
		if _, _, ok := n.first(want); !ok {
			t.Errorf("no %q among the notify messages:\n%s", want, n)
		}
	}
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}

	// Without a NOTIFY_SOCKET of its own (no systemd), machines run gives
	// nspawn one and says when the machine is ready.
	run = m.startRun(t, "slow1")
	waitFor(t, "machines run to report the readiness", func() bool {
		return regexpMatch(`mbctl: machine slow1 is ready after \d+\.\d\ds`, run.output())
	})
	if code := run.stop(t); code != 0 {
		t.Errorf("machines run after SIGTERM: status %d\n%s", code, run.output())
	}
}

// Proof (issue 14, readiness timeout): an app that never gets healthy gets
// no READY=1, and man8s-init fails the start after MAN8S_READY_TIMEOUT,
// with the last check's output in the log.
func TestReadyTimeoutFailsTheStart(t *testing.T) {
	m := newMachineHost(t)
	reg := registry.StartT(t, registry.Options{})
	ref := healthImage(t, reg, "never", "echo app: never listening\nexec sleep 1000\n")
	m.mustMbctl(t, "machines", "pull", "--quiet", ref, "never1", "--env", "MAN8S_READY_TIMEOUT=3")

	n := listenNotify(t)
	start := time.Now()
	run := m.runNotified(t, "never1", n)
	code := run.wait(t)
	took := time.Since(start)
	out := run.output()
	if code == 0 {
		t.Errorf("machines run of a machine that never got ready: status 0\n%s", out)
	}
	if took < 3*time.Second || took > 30*time.Second {
		t.Errorf("the machine ended after %s, want after the 3 s ready timeout", took)
	}
	if m, l, ok := n.first("READY=1"); ok {
		t.Errorf("READY=1 (%s at %s) from a machine that never got ready:\n%s", l, m.at, n)
	}
	if !strings.Contains(out, "man8s-init: ready: not ready after 3s: HEALTHCHECK CMD-SHELL wget") || !strings.Contains(out, "last check: ") {
		t.Errorf("man8s-init did not say why the start failed:\n%s", out)
	}
	if _, _, ok := n.first("STATUS=Container running: failed: not ready after 3s"); !ok {
		t.Errorf("no failure STATUS= line:\n%s", n)
	}
}
