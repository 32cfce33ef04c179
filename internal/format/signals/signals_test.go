package signals

import (
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{
		{"SIGTERM", syscall.SIGTERM, true},
		{"sigquit", syscall.SIGQUIT, true},
		{"QUIT", syscall.SIGQUIT, true},
		{" SIGWINCH ", syscall.SIGWINCH, true},
		{"9", syscall.SIGKILL, true},
		{"SIGRTMIN+3", 37, true},
		{"RTMIN+3", 37, true},
		{"SIGRTMIN", 34, true},
		{"SIGRTMAX-1", 63, true},
		{"SIGRTMAX", 64, true},
		{"SIGRTMIN+31", 0, false},
		{"SIGRTMIN-1", 0, false},
		{"SIGFOO", 0, false},
		{"0", 0, false},
		{"65", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestNameRoundTrip(t *testing.T) {
	for sig := syscall.Signal(1); sig <= 64; sig++ {
		if sig == 32 || sig == 33 {
			continue // reserved by the C library; no systemd name
		}
		name := Name(sig)
		back, err := Parse(name)
		if err != nil || back != sig {
			t.Errorf("Parse(Name(%d) = %q) = %v, %v", sig, name, back, err)
		}
	}
	if got := Name(37); got != "SIGRTMIN+3" {
		t.Errorf("Name(37) = %q", got)
	}
}
