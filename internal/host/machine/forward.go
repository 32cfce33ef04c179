package machine

import (
	"github.com/man8s/mbctl/internal/format/man8env"
)

// Reachability reads what man8s-init publishes about how a running
// machine's exposed ports are reached on its Yggdrasil address
// (man8env.ForwardPath in the machine: directly, or through its
// forwarder), as Health reads the app's health. It returns nil for a
// machine that is not running, has no ports to watch, or whose
// man8s-init does not publish it (an older one) or has not yet.
func (pr Prober) Reachability(st State) (*man8env.Reachability, error) {
	return readPublished[man8env.Reachability](pr, st, man8env.ForwardPath, "the ports' reachability")
}
