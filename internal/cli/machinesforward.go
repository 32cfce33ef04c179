package cli

import (
	"strings"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// describePorts is the Ports row of machines show: for each exposed port,
// how it is reached on the machine's Yggdrasil address ("8080/tcp:
// forwarded to 127.0.0.1:8080", "80/tcp: direct").
func describePorts(r *man8env.Reachability) string {
	if r == nil || len(r.Ports) == 0 {
		return ""
	}
	parts := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		s := p.Port + ": " + p.Ygg
		if p.Ygg == man8env.ReachForwarded && p.Target != "" {
			s += " to " + p.Target
		}
		if p.Error != "" {
			s += " (" + p.Error + ")"
		}
		parts[i] = s
	}
	out := strings.Join(parts, ", ")
	if r.ProxyProtocol {
		out += " (PROXY protocol v2)"
	}
	return out
}
