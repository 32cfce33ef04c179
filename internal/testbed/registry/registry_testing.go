package registry

import (
	"os"
	"os/exec"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

// StartT starts a registry for a test and stops it in t.Cleanup. When the
// registry binary (opts.Binary, default DefaultBinary) is missing the test is
// skipped, or fails when the environment variable CI is "true". Any other
// start error fails the test. When the test has failed, cleanup logs the
// end of the registry log before stopping the registry.
func StartT(t testing.TB, opts Options) *Registry {
	t.Helper()
	RequireBinaryT(t, binaryOrDefault(opts.Binary))
	r, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(r.LogPath()); err == nil {
				t.Logf("registry log %s:\n%s", r.LogPath(), tail(b, 8192))
			}
		}
		if err := r.Close(); err != nil {
			t.Errorf("closing registry: %v", err)
		}
	})
	return r
}

// RequireBinaryT skips the test when the executable bin is not on PATH, or
// fails it when the environment variable CI is "true".
func RequireBinaryT(t testing.TB, bin string) {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		ci.Skip(t, "%s not available: %v", bin, err)
	}
}

// binaryOrDefault returns bin, or DefaultBinary when bin is empty.
func binaryOrDefault(bin string) string {
	if bin == "" {
		return DefaultBinary
	}
	return bin
}

// tail returns at most the last n bytes of b as a string.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
