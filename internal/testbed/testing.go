package testbed

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

// RequireT checks that the testbed can run here: root, and each of tools
// on PATH (or an absolute path that exists). Where it cannot, the test is
// skipped, or fails when CI=true: in CI the e2e suite must never skip.
func RequireT(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		var err error
		if filepath.IsAbs(tool) {
			_, err = os.Stat(tool)
		} else {
			_, err = exec.LookPath(tool)
		}
		if err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	ci.Skip(t, "the e2e testbed needs %v (run as root after `make deps`)", missing)
}

// hostTools are what every testbed host runs.
func hostTools() []string { return []string{"nsenter", "unshare", "yggdrasil", networkdPath} }

// NewHostT starts a testbed host for t and closes it in t.Cleanup, after
// logging the daemons' logs if t failed.
func NewHostT(t testing.TB, opts Options) *Host {
	t.Helper()
	RequireT(t, hostTools()...)
	if opts.Log == nil {
		opts.Log = testLogger(t)
	}
	h, err := NewHost(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting testbed host: %v", err)
	}
	t.Cleanup(func() { closeT(t, h) })
	return h
}

// NewPairT starts two peered testbed hosts for t (see NewPair).
func NewPairT(t testing.TB, a, b Options) (*Host, *Host) {
	t.Helper()
	RequireT(t, hostTools()...)
	for _, o := range []*Options{&a, &b} {
		if o.Log == nil {
			o.Log = testLogger(t)
		}
	}
	ha, hb, err := NewPair(t.Context(), a, b)
	if err != nil {
		t.Fatalf("starting testbed hosts: %v", err)
	}
	t.Cleanup(func() { closeT(t, hb); closeT(t, ha) })
	return ha, hb
}

func closeT(t testing.TB, h *Host) {
	if t.Failed() {
		logs := []string{"networkd.log", "yggdrasil.log"}
		if h.BusAddress != "" {
			logs = append(logs, "dbus.log")
		}
		for _, name := range logs {
			t.Logf("%s %s (tail):\n%s", h.Name, name, proc.Tail(filepath.Join(h.Dir, name), 4000))
		}
	}
	if err := h.Close(); err != nil {
		t.Errorf("closing testbed host %s: %v", h.Name, err)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
