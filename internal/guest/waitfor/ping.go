package waitfor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errICMPNotPermitted means that this process may open neither an unprivileged ICMP socket
// (net.ipv4.ping_group_range excludes its group) nor a raw one (no CAP_NET_RAW).
var errICMPNotPermitted = errors.New("ICMP sockets not permitted")

// ping checks that host is alive. It resolves host and sends an ICMP echo request to each
// address with icmp; the first reply meets the target. When ICMP sockets are not permitted,
// it falls back to tcp: the host counts as alive when a TCP connection attempt gets any
// answer, a SYN-ACK or a RST.
func ping(ctx context.Context, host string, icmp func(ctx context.Context, ip net.IP) error, tcp func(ctx context.Context, ip net.IP) error) error {
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", host, err)
	}
	var errs []error
	for _, a := range addrs {
		err := icmp(ctx, a.IP)
		if errors.Is(err, errICMPNotPermitted) {
			if terr := tcp(ctx, a.IP); terr != nil {
				err = fmt.Errorf("%w; TCP fallback: %w", err, terr)
			} else {
				err = nil
			}
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a.IP, err))
	}
	return errors.Join(errs...)
}

// tcpAnswer connects to ports 80 and 443 of ip; a connection or a refusal (RST) shows the
// host is up. Timeouts and unreachable errors do not.
func tcpAnswer(ctx context.Context, ip net.IP) error {
	var errs []error
	for _, port := range []string{"80", "443"} {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		var d net.Dialer
		conn, err := d.DialContext(actx, "tcp", net.JoinHostPort(ip.String(), port))
		cancel()
		if err == nil {
			conn.Close()
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		errs = append(errs, fmt.Errorf("port %s: %w", port, err))
	}
	return errors.Join(errs...)
}

// icmpEcho sends one ICMP echo request to ip and waits for the reply until ctx ends. It
// tries an unprivileged datagram ICMP socket first, then a raw one.
func icmpEcho(ctx context.Context, ip net.IP) error {
	v4 := ip.To4() != nil
	family, proto := unix.AF_INET6, unix.IPPROTO_ICMPV6
	if v4 {
		family, proto = unix.AF_INET, unix.IPPROTO_ICMP
	}
	raw := false
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if notPermitted(err) {
		raw = true
		fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	}
	if notPermitted(err) {
		return errICMPNotPermitted
	}
	if err != nil {
		return fmt.Errorf("opening ICMP socket: %w", err)
	}
	defer unix.Close(fd)

	var sa unix.Sockaddr
	if v4 {
		s := &unix.SockaddrInet4{}
		copy(s.Addr[:], ip.To4())
		sa = s
	} else {
		s := &unix.SockaddrInet6{}
		copy(s.Addr[:], ip.To16())
		sa = s
	}

	// For datagram sockets the kernel sets the identifier and the checksum (ICMPv6 raw
	// sockets get their checksum from the kernel too).
	id := uint16(time.Now().UnixNano()) ^ uint16(unix.Getpid())
	seq := uint16(time.Now().UnixNano() >> 16)
	msg := echoRequest(v4, id, seq)
	if err := unix.Sendto(fd, msg, 0, sa); err != nil {
		return fmt.Errorf("sending echo request: %w", err)
	}

	buf := make([]byte, 1500)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("no echo reply: %w", err)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 50); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("polling ICMP socket: %w", err)
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("receiving echo reply: %w", err)
		}
		if isReply(buf[:n], v4, raw, id, seq) && sameAddr(from, ip) {
			return nil
		}
	}
}

func notPermitted(err error) bool {
	return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

func echoRequest(v4 bool, id, seq uint16) []byte {
	msg := make([]byte, 16)
	msg[0] = 128 // ICMPv6 echo request
	if v4 {
		msg[0] = 8
	}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], "man8s-wt")
	if v4 {
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	}
	return msg
}

// isReply reports whether b is the echo reply for seq (and id, on raw sockets, where the
// kernel does not demultiplex). Raw IPv4 sockets deliver the IP header too.
func isReply(b []byte, v4, raw bool, id, seq uint16) bool {
	if v4 && raw {
		if len(b) < 20 {
			return false
		}
		b = b[int(b[0]&0x0f)*4:]
	}
	if len(b) < 8 {
		return false
	}
	want := byte(129)
	if v4 {
		want = 0
	}
	if b[0] != want || binary.BigEndian.Uint16(b[6:]) != seq {
		return false
	}
	return !raw || binary.BigEndian.Uint16(b[4:]) == id
}

func sameAddr(from unix.Sockaddr, ip net.IP) bool {
	switch s := from.(type) {
	case *unix.SockaddrInet4:
		return net.IP(s.Addr[:]).Equal(ip)
	case *unix.SockaddrInet6:
		return net.IP(s.Addr[:]).Equal(ip)
	}
	return false
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = (sum & 0xffff) + sum>>16
	}
	return ^uint16(sum)
}
