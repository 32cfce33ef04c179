package ociimage

import (
	"os"
	"testing"
)

// StaticBusyboxT returns the path of a static busybox (see StaticBusybox).
// When there is none the test is skipped, or fails when the environment
// variable CI is "true".
func StaticBusyboxT(t testing.TB) string {
	t.Helper()
	p, err := StaticBusybox()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("a static busybox is required in CI: %v", err)
		}
		t.Skipf("no static busybox: %v", err)
	}
	return p
}
