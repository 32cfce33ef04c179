// Package ci is the one way a test of this repository skips: Skip skips
// where the test cannot run, except in CI (CI=true), where it fails. CI
// installs and runs everything the tests need, so a skip there would hide a
// test that never ran.
package ci

import (
	"fmt"
	"os"
	"testing"
)

// Enabled reports whether the tests run in CI (CI=true).
func Enabled() bool { return os.Getenv("CI") == "true" }

// Skip skips t with the reason, or fails it under CI=true.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if Enabled() {
		t.Fatalf("cannot run here (%s), and under CI=true no test may skip: .ci/run must provide it", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails under CI) a test that needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root: %s", why)
	}
}
