package nspawnport

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Port
		err  string // a part of the error; "" for none
	}{
		{spec: "8080:80", want: Port{TCP, 8080, 80}},
		{spec: "80", want: Port{TCP, 80, 80}},
		{spec: "5353:53/udp", want: Port{UDP, 5353, 53}},
		{spec: "53/UDP", want: Port{UDP, 53, 53}},
		{spec: "8080:80/tcp", want: Port{TCP, 8080, 80}},
		{spec: "65535:1", want: Port{TCP, 65535, 1}},
		{spec: "198.18.0.1:8080:80/udp", err: "a host address (198.18.0.1) cannot be given"},
		{spec: "[fc00::1]:8080:80", err: "a host address (fc00::1) cannot be given"},
		{spec: "::1:8080:80", err: "a host address (::1) cannot be given"},
		{spec: "198.18.0.1:8080", err: "a host address (198.18.0.1) cannot be given"},
		{spec: "", err: "empty"},
		{spec: "/udp", err: "empty"},
		{spec: "8080:80/sctp", err: `protocol "sctp": want tcp or udp`},
		{spec: "0:80", err: `"0" is not a port number`},
		{spec: "8080:0", err: "port in the machine"},
		{spec: "65536", err: "is not a port number"},
		{spec: "http", err: "is not a port number"},
		{spec: "8000-8010:80", err: "a range is not supported"},
		{spec: "8080:", err: "port in the machine"},
		{spec: "1:2:3:4", err: "want HOSTPORT[:PORT]"},
		{spec: " 80", err: "is not a port number"},
	} {
		got, err := ParseSpec(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSpec(%q) = %v, %v; want an error with %q", tc.spec, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  Port
		err   string
	}{
		{value: "tcp:8080:80", want: Port{TCP, 8080, 80}},
		{value: "udp:53", want: Port{UDP, 53, 53}},
		{value: "8080:80", want: Port{TCP, 8080, 80}},
		{value: "80", want: Port{TCP, 80, 80}},
		{value: "sctp:80", err: "host port"},
		{value: "tcp:", err: "host port"},
		{value: "tcp:80:", err: "container port"},
		{value: "tcp:80:81:82", err: "container port"},
	} {
		got, err := Parse(tc.value)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", tc.value, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.value, got, err, tc.want)
		}
	}
}

// A port written as a value reads back the same, and its spec too.
func TestRoundTrip(t *testing.T) {
	for _, p := range []Port{{TCP, 8080, 80}, {UDP, 53, 53}, {TCP, 1, 65535}} {
		if got, err := Parse(p.Value()); err != nil || got != p {
			t.Errorf("Parse(%q) = %v, %v; want %v", p.Value(), got, err, p)
		}
		if got, err := ParseSpec(p.String()); err != nil || got != p {
			t.Errorf("ParseSpec(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if k := (Port{UDP, 5353, 53}).HostKey(); k != "5353/udp" {
		t.Errorf("HostKey = %q", k)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"8080:80", "53/udp", "198.18.0.1:1:2", "[::1]:1:2", "[", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSpec(s)
		if err != nil {
			return
		}
		if q, err := Parse(p.Value()); err != nil || q != p {
			t.Errorf("ParseSpec(%q) = %v, which reads back as %v, %v", s, p, q, err)
		}
	})
}

func TestCheckTemplate(t *testing.T) {
	for _, tc := range []struct{ tmpl, err string }{
		{"network_isolated", ""},
		{"host_network", "refuses Port= without a private network"},
		{"macvlan", "clients reach its ports there"},
	} {
		err := CheckTemplate(tc.tmpl)
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("CheckTemplate(%s) = %v, want %q", tc.tmpl, err, tc.err)
		}
	}
}
