package dhcp4

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

func TestTimers(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name           string
		lease, t1, t2  time.Duration
		wantT1, wantT2 time.Duration
	}{
		{name: "RFC defaults", lease: 86400 * s, wantT1: 43200 * s, wantT2: 75600 * s},
		{name: "short test lease", lease: 10 * s, wantT1: 5 * s, wantT2: 8750 * time.Millisecond},
		{name: "server's values", lease: 3600 * s, t1: 1000 * s, t2: 3000 * s, wantT1: 1000 * s, wantT2: 3000 * s},
		{name: "T2 past the lease", lease: 3600 * s, t1: 1000 * s, t2: 4000 * s, wantT1: 1000 * s, wantT2: 3150 * s},
		{name: "T1 past T2", lease: 3600 * s, t1: 3200 * s, t2: 3000 * s, wantT1: 1800 * s, wantT2: 3000 * s},
		{name: "T2 before half the lease", lease: 3600 * s, t2: 1000 * s, wantT1: 500 * s, wantT2: 1000 * s},
		{name: "no lease time", lease: 0, wantT1: 0, wantT2: 0},
		{name: "infinite lease", lease: infinite, wantT1: 0, wantT2: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t1, t2 := Timers(tt.lease, tt.t1, tt.t2)
			if t1 != tt.wantT1 || t2 != tt.wantT2 {
				t.Errorf("Timers(%s, %s, %s) = %s, %s; want %s, %s", tt.lease, tt.t1, tt.t2, t1, t2, tt.wantT1, tt.wantT2)
			}
			if tt.wantT1 != 0 && !(0 < t1 && t1 < t2 && t2 < tt.lease) {
				t.Errorf("want 0 < T1 < T2 < lease, have %s %s %s", t1, t2, tt.lease)
			}
		})
	}
}

func TestNextAttempt(t *testing.T) {
	const s = time.Second
	for _, tt := range []struct{ left, want time.Duration }{
		{left: 1000 * s, want: 500 * s}, // half the time left
		{left: 100 * s, want: 60 * s},   // down to a minute
		{left: 30 * s, want: 30 * s},    // but never past the deadline
		{left: 0, want: 0},
		{left: -s, want: 0},
	} {
		if got := nextAttempt(tt.left); got != tt.want {
			t.Errorf("nextAttempt(%s) = %s, want %s", tt.left, got, tt.want)
		}
	}
}

func TestDiscoverTimeout(t *testing.T) {
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := discoverTimeout(i); got != w {
			t.Errorf("discoverTimeout(%d) = %s, want %s", i, got, w)
		}
	}
}

// ack builds a server's answer as networkd sends it.
func ack(t *testing.T, mods ...dhcpv4.Modifier) *nclient4.Lease {
	t.Helper()
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(198, 18, 1, 57)),
		dhcpv4.WithServerIP(net.IPv4(198, 18, 1, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(198, 18, 1, 1))),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(198, 18, 1, 1)),
		dhcpv4.WithLeaseTime(3600),
	}
	m, err := dhcpv4.New(append(append(base, dhcpv4.WithHwAddr(mac)), mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &nclient4.Lease{Offer: m, ACK: m}
}

func TestNewLease(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		mods []dhcpv4.Modifier
		want Lease
	}{
		{name: "networkd's answer", want: Lease{
			Addr: netip.MustParsePrefix("198.18.1.57/24"), Router: netip.MustParseAddr("198.18.1.1"),
			Server: netip.MustParseAddr("198.18.1.1"), Start: now, Length: time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second,
		}},
		{name: "DNS and search", mods: []dhcpv4.Modifier{
			dhcpv4.WithDNS(net.IPv4(198, 18, 0, 53), net.IPv4(198, 18, 0, 54)),
			dhcpv4.WithDomainSearchList("lan", "example.org"),
		}, want: Lease{
			Addr: netip.MustParsePrefix("198.18.1.57/24"), Router: netip.MustParseAddr("198.18.1.1"),
			DNS:    []netip.Addr{netip.MustParseAddr("198.18.0.53"), netip.MustParseAddr("198.18.0.54")},
			Search: []string{"lan", "example.org"},
			Server: netip.MustParseAddr("198.18.1.1"), Start: now, Length: time.Hour, T1: 30 * time.Minute, T2: 52*time.Minute + 30*time.Second,
		}},
		{name: "server's T1 and T2", mods: []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(600 * time.Second)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(1200 * time.Second)),
		}, want: Lease{
			Addr: netip.MustParsePrefix("198.18.1.57/24"), Router: netip.MustParseAddr("198.18.1.1"),
			Server: netip.MustParseAddr("198.18.1.1"), Start: now, Length: time.Hour, T1: 10 * time.Minute, T2: 20 * time.Minute,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := ack(t, tt.mods...)
			l, err := newLease(raw, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, *l, cmpopts.IgnoreUnexported(Lease{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("lease (-want +got):\n%s", diff)
			}
			if got, want := l.Renew(), now.Add(tt.want.T1); !got.Equal(want) {
				t.Errorf("Renew() = %v, want %v", got, want)
			}

			// Round trip through the renewer's environment.
			text, err := l.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseLease(string(text))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*l, *back, cmpopts.IgnoreUnexported(Lease{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("lease after MarshalText/ParseLease (-before +after):\n%s", diff)
			}
		})
	}
}

func TestNewLeaseRejectsNoAddress(t *testing.T) {
	raw := ack(t, dhcpv4.WithYourIP(net.IPv4zero))
	if _, err := newLease(raw, time.Now()); err == nil {
		t.Error("a lease without an address was accepted")
	}
}

func TestParseLeaseErrors(t *testing.T) {
	for _, s := range []string{"", "a.b", "zz.00.1", "00.00.x"} {
		if _, err := ParseLease(s); err == nil {
			t.Errorf("ParseLease(%q) accepted", s)
		}
	}
}
