package cli

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestReportStarted(t *testing.T) {
	d, _, _, errOut := testMachineDeps(t)
	p := completeMachine(t, d)
	d.reportStarted(p, 1500*time.Millisecond)
	if got := errOut.String(); got != "Machine web started after 1.5s.\n" {
		t.Errorf("stopped machine: %q", got)
	}
	errOut.Reset()
	runningWithHealth(t, &d, man8env.Health{Status: man8env.HealthHealthy, Ready: time.Now(), ReadyCheck: "tcp://127.0.0.1:80"})
	d.reportStarted(p, 2*time.Second)
	if got := errOut.String(); got != "Machine web ready (tcp://127.0.0.1:80) after 2.0s.\n" {
		t.Errorf("ready machine: %q", got)
	}
}

func TestWatchReady(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	var out syncBuffer
	stop := watchReady(&out, slog.New(slog.DiscardHandler), "web")
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		t.Fatal("no NOTIFY_SOCKET for nspawn")
	}
	conn, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("STATUS=Container running: starting\n"))
	conn.Write([]byte("READY=1\n"))
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "is ready") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if !regexp.MustCompile(`^mbctl: machine web is ready after \d+\.\d\ds\n$`).MatchString(out.String()) {
		t.Errorf("printed %q", out.String())
	}
	if os.Getenv("NOTIFY_SOCKET") != "" {
		t.Error("NOTIFY_SOCKET left set")
	}
	// mbctl run by systemd: nspawn gets systemd's socket, mbctl listens to nothing.
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	watchReady(&out, slog.New(slog.DiscardHandler), "web")()
	if os.Getenv("NOTIFY_SOCKET") != "/run/systemd/notify" {
		t.Error("systemd's NOTIFY_SOCKET replaced")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
