package yggaddr

import (
	"crypto/sha256"
	"net/netip"
	"strings"
	"testing"
)

func TestAddress(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		machine string
		want    string
	}{
		{name: "design test vector", prefix: "300:2e98:a4b0:1789::/64", machine: "TestBWContainer3", want: "300:2e98:a4b0:1789:1d44:bc13:a177:c4d"},
		{name: "unmasked prefix is masked first", prefix: "300:2e98:a4b0:1789:ffff:ffff:ffff:ffff/64", machine: "TestBWContainer3", want: "300:2e98:a4b0:1789:1d44:bc13:a177:c4d"},
		{name: "suffix prefix", prefix: "::/64", machine: "TestBWContainer3", want: "::1d44:bc13:a177:c4d"},
		// SHA-256("TestBWContainer3") = 0c90bce3607c6db367785084ae85f9b9 cbde87d3a20920e31d44bc13a1770c4d
		{name: "/0 takes the last 16 digest bytes", prefix: "::/0", machine: "TestBWContainer3", want: "cbde:87d3:a209:20e3:1d44:bc13:a177:c4d"},
		{name: "/128 is the prefix itself", prefix: "300:2e98:a4b0:1789::5/128", machine: "TestBWContainer3", want: "300:2e98:a4b0:1789::5"},
		{name: "/48", prefix: "300:2e98:a4b0::/48", machine: "TestBWContainer3", want: "300:2e98:a4b0:20e3:1d44:bc13:a177:c4d"},
		// 0x20 = 0010 0000: with /52 the top 4 bits of the 4th group come from
		// the prefix (0x1), the low 12 from the digest (0x0e3).
		{name: "/52 ends inside a byte", prefix: "300:2e98:a4b0:1789::/52", machine: "TestBWContainer3", want: "300:2e98:a4b0:10e3:1d44:bc13:a177:c4d"},
		// /63: prefix bit 63 is 1 (…:1789 → last bit 1), digest byte 8 is 0x1d
		// whose top bit is 0 → only the prefix's bits survive in the 4th group.
		{name: "/63", prefix: "300:2e98:a4b0:1789::/63", machine: "TestBWContainer3", want: "300:2e98:a4b0:1789:1d44:bc13:a177:c4d"},
		{name: "/65 keeps prefix bit 64", prefix: "300:2e98:a4b0:1789:8000::/65", machine: "TestBWContainer3", want: "300:2e98:a4b0:1789:9d44:bc13:a177:c4d"},
		{name: "/127", prefix: "300:2e98:a4b0:1789::/127", machine: "TestBWContainer3", want: "300:2e98:a4b0:1789::1"},
		// SHA-256("") ends a495991b7852b855.
		{name: "empty name is hashed too", prefix: "::/64", machine: "", want: "::a495:991b:7852:b855"},
		// SHA-256("é" = c3 a9) ends 7a0625a09f1c3f6e2ba69c4c: a /32 takes 12 bytes.
		{name: "unicode name hashed as UTF-8", prefix: "300::/32", machine: "é", want: "300:0:7a06:25a0:9f1c:3f6e:2ba6:9c4c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			got, err := Address(netip.MustParsePrefix(tt.prefix), tt.machine)
			if err != nil {
				t.Fatalf("Address(%s, %q): %v", tt.prefix, tt.machine, err)
			}
			if got.String() != want {
				t.Fatalf("Address(%s, %q) = %s, want %s", tt.prefix, tt.machine, got, want)
			}
		})
	}
}

// referenceAddress computes Address bit by bit, independently of fill.
func referenceAddress(t *testing.T, prefix, name string) netip.Addr {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	a := p.Addr().As16()
	d := sha256.Sum256([]byte(name))
	low := d[16:]
	var out [16]byte
	for bit := 0; bit < 128; bit++ {
		src := a
		if bit >= p.Bits() {
			src = [16]byte(low)
		}
		if src[bit/8]&(0x80>>(bit%8)) != 0 {
			out[bit/8] |= 0x80 >> (bit % 8)
		}
	}
	return netip.AddrFrom16(out)
}

func TestAddressEveryPrefixLength(t *testing.T) {
	base := netip.MustParseAddr("3ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	for _, name := range []string{"TestBWContainer3", "a", "registry", "x.y-z"} {
		for bits := 0; bits <= 128; bits++ {
			p := netip.PrefixFrom(base, bits)
			got, err := Address(p, name)
			if err != nil {
				t.Fatalf("Address(%s, %q): %v", p, name, err)
			}
			if !p.Masked().Contains(got) {
				t.Fatalf("Address(%s, %q) = %s is outside the prefix", p, name, got)
			}
			if want := referenceAddress(t, p.Masked().String(), name); got != want {
				t.Fatalf("Address(%s, %q) = %s, want %s", p, name, got, want)
			}
		}
	}
}

func TestAddressRejects(t *testing.T) {
	tests := []struct {
		name    string
		prefix  netip.Prefix
		wantErr string
	}{
		{name: "zero prefix", prefix: netip.Prefix{}, wantErr: "is not a valid IPv6 prefix"},
		{name: "IPv4", prefix: netip.MustParsePrefix("10.0.0.0/8"), wantErr: "is IPv4"},
		{name: "IPv4-mapped", prefix: netip.MustParsePrefix("::ffff:10.0.0.0/104"), wantErr: "is IPv4-mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Address(tt.prefix, "web")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Address(%v) error = %v, want it to contain %q", tt.prefix, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), `machine "web"`) {
				t.Fatalf("Address(%v) error = %v, want it to name the machine", tt.prefix, err)
			}
			_, err = Gateway(tt.prefix)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Gateway(%v) error = %v, want it to contain %q", tt.prefix, err, tt.wantErr)
			}
		})
	}
}

func TestSuffix(t *testing.T) {
	if got, want := Suffix("TestBWContainer3").String(), "::1d44:bc13:a177:c4d"; got != want {
		t.Fatalf("Suffix(TestBWContainer3) = %s, want %s", got, want)
	}
	for _, name := range []string{"", "a", "web", "é"} {
		want, err := Address(netip.MustParsePrefix("::/64"), name)
		if err != nil {
			t.Fatal(err)
		}
		if got := Suffix(name); got != want {
			t.Fatalf("Suffix(%q) = %s, want Address(::/64) = %s", name, got, want)
		}
	}
}

func TestGateway(t *testing.T) {
	tests := []struct {
		prefix  string
		want    string
		wantErr string
	}{
		{prefix: "300:2e98:a4b0:1789::/64", want: "300:2e98:a4b0:1789::1"},
		{prefix: "300:2e98:a4b0:1789:1d44:bc13:a177:c4d/64", want: "300:2e98:a4b0:1789::1"},
		{prefix: "::/0", want: "::1"},
		{prefix: "300:2e98:a4b0:1789::/127", want: "300:2e98:a4b0:1789::1"},
		{prefix: "300:2e98:a4b0:1789::/128", wantErr: "has no host bits"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, err := Gateway(netip.MustParsePrefix(tt.prefix))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Gateway(%s) = %v, %v; want error containing %q", tt.prefix, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("Gateway(%s) = %v, %v; want %s", tt.prefix, got, err, tt.want)
			}
		})
	}
}
