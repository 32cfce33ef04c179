// Package e2e tests mbctl against the real components: systemd-nspawn,
// systemd-networkd, yggdrasil and the distribution registry, in testbed
// hosts (network namespaces) built by internal/testbed. Run as root:
//
//	make e2e
//
// With CI=true a test that cannot run here fails instead of skipping.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/image/gunzip"
	"github.com/man8s/mbctl/internal/testbed"
)

// bins holds the binaries under test, built once by TestMain.
var bins struct {
	dir   string
	mbctl string
	// mbctlStatic is mbctl in pure Go (CGO_ENABLED=0): the same as mbctl
	// unless mbctl is built with ISA-L (go test -tags isal), as `make` does.
	mbctlStatic string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mbctl-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.dir = dir
	bins.mbctl = filepath.Join(dir, "mbctl")
	bins.mbctlStatic = bins.mbctl
	builds := [][]string{{"CGO_ENABLED=0", "-o", dir, "github.com/man8s/mbctl/cmd/mbctl", "github.com/man8s/mbctl/cmd/man8s-init"}}
	if gunzip.Engine == "isa-l" {
		// Test what `make build` ships: mbctl with ISA-L, and beside it the
		// pure-Go build that the multi-call test copies into a machine.
		bins.mbctlStatic = filepath.Join(dir, "static", "mbctl")
		builds = [][]string{
			{"CGO_ENABLED=0", "-o", dir, "github.com/man8s/mbctl/cmd/man8s-init"},
			{"CGO_ENABLED=0", "-o", bins.mbctlStatic, "github.com/man8s/mbctl/cmd/mbctl"},
			{"CGO_ENABLED=1", "-tags", "isal", "-o", bins.mbctl, "github.com/man8s/mbctl/cmd/mbctl"},
		}
	}
	for _, b := range builds {
		build := exec.Command("go", append([]string{"build", "-trimpath"}, b[1:]...)...)
		build.Env = append(os.Environ(), b[0])
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building mbctl for e2e (%s): %v\n", strings.Join(b, " "), err)
			return 1
		}
	}
	return m.Run()
}

// stopGently makes cmd, systemd-nspawn or a command that execs it, stop the
// way a user stops a machine when its context ends (a test's deadline or
// failure): SIGTERM, which nspawn turns into an orderly shutdown that
// unmounts and removes what it set up, and SIGKILL only if that takes more
// than 10 s. exec.CommandContext alone sends SIGKILL, which leaves the
// machine's mounts and processes behind.
func stopGently(cmd *exec.Cmd) *exec.Cmd {
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// poll checks cond every 20 ms until it holds (true), or timeout passes or
// stop (if not nil) is closed first (false).
func poll(timeout time.Duration, stop <-chan struct{}, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-stop:
			return cond()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// fileExists returns a condition for poll: path exists.
func fileExists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// writeConfig writes an mbctl.toml whose every path lies under dir, with
// the given extra TOML appended, and returns its path.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "mbctl.toml")
	if err := os.WriteFile(path, []byte(testbed.MbctlConfig(dir, "", extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
