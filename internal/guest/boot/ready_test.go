package boot

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/man8env"
)

// notifyReader listens where NOTIFY_SOCKET points and collects the lines.
func notifyReader(t *testing.T) func() []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return func() []string {
		var lines []string
		buf := make([]byte, 4096)
		for {
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return lines
			}
			lines = append(lines, strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n")...)
		}
	}
}

// The app (a shell) makes a file after a while; MAN8S_READY=file:// waits
// for it, then READY=1 and the STATUS= lines go to $NOTIFY_SOCKET, and
// the state file says ready. The app does not get NOTIFY_SOCKET.
func TestRunSendsReadyWhenTheConditionHolds(t *testing.T) {
	root := t.TempDir()
	flag := filepath.Join(root, "up")
	seen := filepath.Join(root, "env.out")
	read := notifyReader(t)
	writeEnv(t, root, map[string]string{
		man8env.KeyArgs:  appargs.ShellPath + " -c 'echo \"[$NOTIFY_SOCKET]\" > " + seen + "; sleep 0.3; touch " + flag + "; sleep 0.5'",
		man8env.KeyReady: "file://" + flag,
	})
	var log strings.Builder
	lw := &lockedWriter{w: &log}
	if status := Run(t.Context(), Options{Root: root, Log: lw}); status != 0 {
		t.Fatalf("status %d\n%s", status, log.String())
	}
	lines := read()
	joined := strings.Join(lines, "|")
	if !strings.Contains(joined, "STATUS=starting: waiting up to 1m20s for file://"+flag) || !strings.Contains(joined, "READY=1|STATUS=ready after") {
		t.Errorf("notify lines %q", lines)
	}
	if got, _ := os.ReadFile(seen); string(got) != "[]\n" {
		t.Errorf("the app saw NOTIFY_SOCKET %q", got)
	}
	if !regexp.MustCompile(`man8s-init: ready: ready after 3\d\dms \(file://`).MatchString(log.String()) {
		t.Errorf("log:\n%s", log.String())
	}
	var h man8env.Health
	data, err := os.ReadFile(filepath.Join(root, man8env.HealthPath))
	if err != nil || json.Unmarshal(data, &h) != nil || h.Status != man8env.HealthReady || h.Ready.IsZero() {
		t.Errorf("state file %s: %v", data, err)
	}
}

// A condition that never holds: no READY=1, the app is stopped after
// MAN8S_READY_TIMEOUT and man8s-init fails, whatever the app's status.
func TestRunFailsWhenNeverReady(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, appargs.ShellPath), nil, 0o755); err != nil { // the image has a shell
		t.Fatal(err)
	}
	read := notifyReader(t)
	writeEnv(t, root, map[string]string{
		man8env.KeyArgs:         appargs.ShellPath + " -c 'trap \"exit 0\" TERM; while :; do sleep 0.05; done'",
		man8env.KeyReady:        "cmd:echo still warming up; exit 3",
		man8env.KeyReadyTimeout: "0.4s",
	})
	var log strings.Builder
	start := time.Now()
	status := Run(t.Context(), Options{Root: root, Log: &lockedWriter{w: &log}, Signals: make(chan os.Signal)})
	if status != 1 || time.Since(start) > 10*time.Second {
		t.Errorf("status %d after %s, want 1\n%s", status, time.Since(start), log.String())
	}
	lines := read()
	for _, l := range lines {
		if l == "READY=1" {
			t.Errorf("READY=1 sent: %q", lines)
		}
	}
	if !strings.Contains(log.String(), "man8s-init: ready: not ready after 400ms: cmd:echo still warming up; exit 3 never held; last check: still warming up; stopping the app") {
		t.Errorf("log:\n%s", log.String())
	}
}
