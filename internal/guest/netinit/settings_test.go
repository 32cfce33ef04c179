package netinit

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestParseSettings(t *testing.T) {
	def := Settings{
		Template: man8env.TemplateNetworkIsolated,
		Check:    CheckWarn, IPv6: IPv6Required, YggTable: 199, YggRulePriority: 100,
		DHCPTimeout: 30 * time.Second, IPv6Timeout: 30 * time.Second, ResolvConf: "/etc/resolv.conf",
	}
	with := func(f func(*Settings)) Settings { s := def; f(&s); return s }
	tests := []struct {
		name    string
		vars    map[string]string
		want    Settings
		wantErr string
	}{
		{name: "defaults", vars: nil, want: def},
		{name: "unrelated keys", vars: map[string]string{"MAN8S_APPLICATION_ARGS": "nginx"}, want: def},
		{name: "ygg address", vars: map[string]string{man8env.KeyYggAddress: " 300:2e98:a4b0:1789:1d44:bc13:a177:c4d "},
			want: with(func(s *Settings) { s.YggAddress = netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d") })},
		{name: "table and priority", vars: map[string]string{man8env.KeyYggTable: "1000", man8env.KeyYggPriority: "32000"},
			want: with(func(s *Settings) { s.YggTable, s.YggRulePriority = 1000, 32000 })},
		{name: "strict, optional IPv6 waits briefly", vars: map[string]string{man8env.KeyCheck: "Strict", man8env.KeyIPv6: "optional"},
			want: with(func(s *Settings) { s.Check, s.IPv6, s.IPv6Timeout = CheckStrict, IPv6Optional, time.Second })},
		{name: "check off", vars: map[string]string{man8env.KeyCheck: "off"}, want: with(func(s *Settings) { s.Check = CheckOff })},
		{name: "timeouts in seconds and durations", vars: map[string]string{man8env.KeyDHCPTimeout: "5", man8env.KeyIPv6Timeout: "1.5s"},
			want: with(func(s *Settings) { s.DHCPTimeout, s.IPv6Timeout = 5*time.Second, 1500*time.Millisecond })},
		{name: "optional with explicit timeout", vars: map[string]string{man8env.KeyIPv6: "optional", man8env.KeyIPv6Timeout: "3"},
			want: with(func(s *Settings) { s.IPv6, s.IPv6Timeout = IPv6Optional, 3*time.Second })},
		{name: "dns, link, resolv.conf", vars: map[string]string{man8env.KeyCheckDNS: "example.org", man8env.KeyLink: "eth1", man8env.KeyResolvConf: "/run/resolv.conf"},
			want: with(func(s *Settings) { s.CheckDNS, s.Link, s.ResolvConf = "example.org", "eth1", "/run/resolv.conf" })},

		{name: "template alias", vars: map[string]string{man8env.KeyTemplate: "netns-init"}, want: def},
		{name: "macvlan", vars: map[string]string{man8env.KeyTemplate: " macvlan "}, want: with(func(s *Settings) { s.Template = man8env.TemplateMacvlan })},
		{name: "host network", vars: map[string]string{man8env.KeyTemplate: "host_network"}, want: with(func(s *Settings) { s.Template = man8env.TemplateHostNetwork })},
		{name: "bad template", vars: map[string]string{man8env.KeyTemplate: "bridge"}, wantErr: man8env.KeyTemplate + `: unknown template "bridge"`},
		{name: "bad check", vars: map[string]string{man8env.KeyCheck: "loud"}, wantErr: man8env.KeyCheck},
		{name: "bad ipv6", vars: map[string]string{man8env.KeyIPv6: "maybe"}, wantErr: man8env.KeyIPv6},
		{name: "ygg address not IPv6", vars: map[string]string{man8env.KeyYggAddress: "198.18.1.5"}, wantErr: man8env.KeyYggAddress},
		{name: "ygg address mapped", vars: map[string]string{man8env.KeyYggAddress: "::ffff:198.18.1.5"}, wantErr: man8env.KeyYggAddress},
		{name: "ygg address with zone", vars: map[string]string{man8env.KeyYggAddress: "fe80::1%host0"}, wantErr: man8env.KeyYggAddress},
		{name: "ygg address garbage", vars: map[string]string{man8env.KeyYggAddress: "300::/64"}, wantErr: man8env.KeyYggAddress},
		{name: "main table", vars: map[string]string{man8env.KeyYggTable: "254"}, wantErr: "reserved"},
		{name: "table zero", vars: map[string]string{man8env.KeyYggTable: "0"}, wantErr: man8env.KeyYggTable},
		{name: "table words", vars: map[string]string{man8env.KeyYggTable: "ygg"}, wantErr: man8env.KeyYggTable},
		{name: "priority too high", vars: map[string]string{man8env.KeyYggPriority: "32766"}, wantErr: man8env.KeyYggPriority},
		{name: "negative timeout", vars: map[string]string{man8env.KeyDHCPTimeout: "-1s"}, wantErr: man8env.KeyDHCPTimeout},
		{name: "zero timeout", vars: map[string]string{man8env.KeyIPv6Timeout: "0"}, wantErr: man8env.KeyIPv6Timeout},
		{name: "relative resolv.conf", vars: map[string]string{man8env.KeyResolvConf: "etc/resolv.conf"}, wantErr: man8env.KeyResolvConf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSettings(tt.vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanYgg(t *testing.T) {
	p := PlanYgg(netip.MustParseAddr("300:2e98:a4b0:1789:1d44:bc13:a177:c4d"), 199, 100)
	want := "300:2e98:a4b0:1789:1d44:bc13:a177:c4d/64 noprefixroute nodad; table 199: " +
		"300:2e98:a4b0:1789::/64 src 300:2e98:a4b0:1789:1d44:bc13:a177:c4d, " +
		"200::/7 via 300:2e98:a4b0:1789::1 src 300:2e98:a4b0:1789:1d44:bc13:a177:c4d; " +
		"rule to 200::/7 lookup 199 priority 100"
	if got := p.String(); got != want {
		t.Errorf("plan:\n got %s\nwant %s", got, want)
	}
	rs := p.routes(7)
	if len(rs) != 2 || rs[0].Gw != nil || rs[1].Gw.String() != "300:2e98:a4b0:1789::1" || rs[0].Table != 199 || rs[1].LinkIndex != 7 {
		t.Errorf("routes: %+v", rs)
	}
	r := p.rule()
	if r.Dst.String() != "200::/7" || r.Table != 199 || r.Priority != 100 || r.Src != nil {
		t.Errorf("rule: %+v", r)
	}
}

// FuzzParseSettings: any values either fail with an error naming a key or
// give settings within their ranges.
func FuzzParseSettings(f *testing.F) {
	f.Add("warn", "optional", "300:2e98:a4b0:1789:1d44:bc13:a177:c4d", "199", "100", "30", "1.5s")
	f.Add("", "", "", "", "", "", "")
	f.Add("STRICT", "required", "::1", "4294967295", "32765", "0", "-1")
	f.Fuzz(func(t *testing.T, check, ipv6, addr, table, prio, dhcp, v6 string) {
		s, err := ParseSettings(map[string]string{man8env.KeyCheck: check, man8env.KeyIPv6: ipv6, man8env.KeyYggAddress: addr,
			man8env.KeyYggTable: table, man8env.KeyYggPriority: prio, man8env.KeyDHCPTimeout: dhcp, man8env.KeyIPv6Timeout: v6})
		if err != nil {
			if !strings.Contains(err.Error(), "MAN8S_") {
				t.Errorf("error names no key: %v", err)
			}
			return
		}
		if s.YggTable < 1 || s.YggTable == 253 || s.YggTable == 254 || s.YggTable == 255 ||
			s.YggRulePriority < 1 || s.YggRulePriority > 32765 || s.DHCPTimeout <= 0 || s.IPv6Timeout <= 0 ||
			(s.YggAddress.IsValid() && !s.YggAddress.Is6()) {
			t.Errorf("out of range: %+v", s)
		}
	})
}
