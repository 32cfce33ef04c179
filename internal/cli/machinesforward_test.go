package cli

import (
	"testing"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestDescribePorts(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *man8env.Reachability
		want string
	}{
		{"none", nil, ""},
		{"no ports", &man8env.Reachability{}, ""},
		{"mixed", &man8env.Reachability{Ports: []man8env.PortReach{
			{Port: "80/tcp", Ygg: man8env.ReachDirect},
			{Port: "8080/tcp", Ygg: man8env.ReachForwarded, Target: "127.0.0.1:8080"},
			{Port: "9000/udp", Ygg: man8env.ReachNone},
		}}, "80/tcp: direct, 8080/tcp: forwarded to 127.0.0.1:8080, 9000/udp: not listening"},
		{"proxy and failure", &man8env.Reachability{ProxyProtocol: true, Ports: []man8env.PortReach{
			{Port: "80/tcp", Ygg: man8env.ReachFailed, Target: "127.0.0.1:80", Error: "address in use"},
		}}, "80/tcp: forward failed (address in use) (PROXY protocol v2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describePorts(tc.r); got != tc.want {
				t.Errorf("describePorts = %q, want %q", got, tc.want)
			}
		})
	}
}
