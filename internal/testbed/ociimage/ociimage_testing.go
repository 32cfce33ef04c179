package ociimage

import (
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

// StaticBusyboxT returns the path of a static busybox (see StaticBusybox).
// When there is none the test is skipped, or fails when the environment
// variable CI is "true".
func StaticBusyboxT(t testing.TB) string {
	t.Helper()
	p, err := StaticBusybox()
	if err != nil {
		ci.Skip(t, "no static busybox: %v", err)
	}
	return p
}
