package boot

import (
	"testing"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestForwardOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vars  map[string]string
		on    bool
		ports string
		proxy bool
		off   bool
		ygg   string
		err   bool
	}{
		{name: "nothing", vars: map[string]string{}},
		{name: "exposed", vars: map[string]string{man8env.KeyExposedPorts: "8080/tcp,53/udp", man8env.KeyYggAddress: "300::7"},
			on: true, ports: "53/udp,8080/tcp", ygg: "300::7"},
		{name: "exposed and more", vars: map[string]string{man8env.KeyExposedPorts: "8080/tcp", man8env.KeyForwardPorts: "8000, 9000/udp,8080"},
			on: true, ports: "8000/tcp,8080/tcp,9000/udp"},
		{name: "off", vars: map[string]string{man8env.KeyExposedPorts: "8080/tcp", man8env.KeyForwardPorts: "off"}, on: true, ports: "8080/tcp", off: true},
		{name: "off, nothing exposed", vars: map[string]string{man8env.KeyForwardPorts: "OFF"}, off: true},
		{name: "proxy", vars: map[string]string{man8env.KeyForwardPorts: "80", man8env.KeyForwardProxyProtocol: "1"}, on: true, ports: "80/tcp", proxy: true},
		{name: "bad port", vars: map[string]string{man8env.KeyForwardPorts: "80/sctp"}, err: true},
		{name: "bad proxy", vars: map[string]string{man8env.KeyForwardPorts: "80", man8env.KeyForwardProxyProtocol: "v2"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, on, err := forwardOptions("/", tc.vars)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want an error: %v", err, tc.err)
			}
			if err != nil {
				return
			}
			ygg := ""
			if o.Ygg.IsValid() {
				ygg = o.Ygg.String()
			}
			if on != tc.on || man8env.FormatPorts(o.Ports) != tc.ports || o.ProxyProtocol != tc.proxy || o.Off != tc.off || ygg != tc.ygg {
				t.Errorf("on %v ports %q proxy %v off %v ygg %q, want %v %q %v %v %q", on, man8env.FormatPorts(o.Ports), o.ProxyProtocol, o.Off, ygg, tc.on, tc.ports, tc.proxy, tc.off, tc.ygg)
			}
		})
	}
}
