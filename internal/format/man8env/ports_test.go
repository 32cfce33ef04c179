package man8env

import "testing"

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"", "", false},
		{"8080", "8080/tcp", false},
		{"9000/udp, 8000,8000/tcp", "8000/tcp,9000/udp", false},
		{"53/UDP,53/tcp", "53/tcp,53/udp", false},
		{"0", "", true},
		{"65536", "", true},
		{"80/sctp", "", true},
		{"http", "", true},
	} {
		ps, err := ParsePorts(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParsePorts(%q): %v, want an error: %v", tc.in, err, tc.err)
			continue
		}
		if got := FormatPorts(ps); got != tc.want {
			t.Errorf("ParsePorts(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
