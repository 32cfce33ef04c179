// Package signals converts between signal names as images and systemd write
// them ("SIGQUIT", "QUIT", "3", "SIGRTMIN+3", "RTMIN+3") and signal numbers.
package signals

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// rtmin and rtmax are the real-time signal range as glibc and systemd use
// it (the kernel's 32 and 33 are reserved by the C library).
const (
	rtmin = 34
	rtmax = 64
)

// Parse returns the signal named s: a name with or without the SIG prefix
// (case-insensitive), RTMIN+n / RTMAX-n, or a number.
func Parse(s string) (syscall.Signal, error) {
	orig := s
	s = strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > rtmax {
			return 0, fmt.Errorf("signal %q: number out of range 1..%d", orig, rtmax)
		}
		return syscall.Signal(n), nil
	}
	s = strings.TrimPrefix(s, "SIG")
	if rest, ok := strings.CutPrefix(s, "RTMIN"); ok {
		return realtime(orig, rtmin, rest, +1)
	}
	if rest, ok := strings.CutPrefix(s, "RTMAX"); ok {
		return realtime(orig, rtmax, rest, -1)
	}
	if sig := unix.SignalNum("SIG" + s); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q (use a name like SIGTERM, SIGQUIT, SIGRTMIN+3, or a number)", orig)
}

func realtime(orig string, base int, rest string, dir int) (syscall.Signal, error) {
	if rest == "" {
		return syscall.Signal(base), nil
	}
	sign := "+"
	if dir < 0 {
		sign = "-"
	}
	numStr, ok := strings.CutPrefix(rest, sign)
	n, err := strconv.Atoi(numStr)
	if !ok || err != nil || n < 0 || n > rtmax-rtmin {
		return 0, fmt.Errorf("signal %q: want RTMIN+n or RTMAX-n with n from 0 to %d", orig, rtmax-rtmin)
	}
	return syscall.Signal(base + dir*n), nil
}

// Name returns the systemd-style name of sig: "SIGTERM", "SIGRTMIN+3".
func Name(sig syscall.Signal) string {
	if int(sig) >= rtmin && int(sig) <= rtmax {
		if sig == rtmin {
			return "SIGRTMIN"
		}
		return fmt.Sprintf("SIGRTMIN+%d", int(sig)-rtmin)
	}
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return strconv.Itoa(int(sig))
}
