package cli

import (
	"context"
	"fmt"
	"io"
)

// envFaultPause names mbctl's fault hook, for crash tests: with
// MBCTL_FAULT_PAUSE=STEP, machines pull (provision.Steps and the
// "install:..." sub-steps) and oci download ("staging", "unpack",
// "rename") stop before STEP, say so on stderr, and wait until they are
// killed or interrupted. The e2e suite kill -9s them there.
const envFaultPause = "MBCTL_FAULT_PAUSE"

// faultPause returns the BeforeStep hook for envFaultPause, or nil when it
// is not set.
func faultPause(ctx context.Context, getenv func(string) string, errOut io.Writer) func(step string) error {
	if getenv == nil {
		return nil
	}
	at := getenv(envFaultPause)
	if at == "" {
		return nil
	}
	return func(step string) error {
		if step != at {
			return nil
		}
		fmt.Fprintf(errOut, "mbctl: paused before %s (%s); waiting to be killed\n", step, envFaultPause)
		<-ctx.Done()
		return ctx.Err()
	}
}
