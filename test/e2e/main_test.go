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
	"testing"

	"github.com/man8s/mbctl/internal/testbed"
)

// bins holds the binaries under test, built once by TestMain.
var bins struct {
	dir   string
	mbctl string
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
	build := exec.Command("go", "build", "-trimpath", "-o", dir, "github.com/man8s/mbctl/cmd/mbctl", "github.com/man8s/mbctl/cmd/man8s-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building mbctl for e2e: %v\n", err)
		return 1
	}
	return m.Run()
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
