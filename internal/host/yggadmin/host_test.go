package yggadmin

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHostSubnet(t *testing.T) {
	_, running := serve(t, "unix", reply(readFixture(t, "getself-0.5.12.json")))
	_, failing := serve(t, "unix", reply(readFixture(t, "error-0.4.7.json")))
	missing := "unix://" + filepath.Join(socketDir(t), "missing.sock")

	tests := []struct {
		name       string
		admin      string
		configured string
		want       string
		wantSource string
		wantErr    string
		wantIs     error
	}{
		{name: "node answers", admin: running, want: "300:813c:ad4a:3c08::/64", wantSource: SubnetFromNode},
		{name: "node wins over the config", admin: running, configured: "300:2e98:a4b0:1789::/64", want: "300:813c:ad4a:3c08::/64", wantSource: SubnetFromNode},
		{name: "node unreachable, config used", admin: missing, configured: "300:2e98:a4b0:1789::/64", want: "300:2e98:a4b0:1789::/64", wantSource: SubnetFromConfig},
		{name: "configured prefix is masked", admin: missing, configured: "300:2e98:a4b0:1789::1/64", want: "300:2e98:a4b0:1789::/64", wantSource: SubnetFromConfig},
		{name: "no endpoint, config used", configured: "300:2e98:a4b0:1789::/64", want: "300:2e98:a4b0:1789::/64", wantSource: SubnetFromConfig},
		{name: "node unreachable, no config", admin: missing, wantErr: "does not exist: is yggdrasil running? or set network.ygg_prefix in the config", wantIs: ErrUnreachable},
		{name: "node errors, no fallback", admin: failing, configured: "300:2e98:a4b0:1789::/64", wantErr: "reading this host's yggdrasil subnet: yggdrasil admin socket"},
		{name: "nothing configured", wantErr: "this host's yggdrasil subnet is unknown: set network.ygg_admin"},
		{name: "bad endpoint", admin: "http://x", wantErr: `scheme "http" is not supported`},
		{name: "bad configured prefix", admin: missing, configured: "300::", wantErr: `configured yggdrasil prefix network.ygg_prefix "300::"`},
		{name: "IPv4 configured prefix", configured: "10.0.0.0/8", wantErr: "is IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, source, err := HostSubnet(t.Context(), tt.admin, tt.configured, WithTimeout(time.Second))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("HostSubnet = %v, %q, %v; want error containing %q", got, source, err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Fatalf("HostSubnet error %q does not match %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("HostSubnet: %v", err)
			}
			if got.String() != tt.want || source != tt.wantSource {
				t.Fatalf("HostSubnet = %s, %q; want %s, %q", got, source, tt.want, tt.wantSource)
			}
		})
	}
}
