package forward

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// Listener is a socket that accepts connections (TCP in LISTEN state) or
// datagrams from anyone (UDP, bound and not connected), as the kernel
// lists it in /proc/net.
type Listener struct {
	Proto string // man8env.TCP or man8env.UDP
	Addr  netip.AddrPort
}

// Socket states of /proc/net/{tcp,udp}{,6} (include/net/tcp_states.h).
const (
	stateListen = "0A" // TCP_LISTEN
	stateClose  = "07" // TCP_CLOSE: a UDP socket that is not connected
)

// ReadListeners reads the listening sockets of the network namespace
// whose /proc/net is dir (man8s-init: /proc/net, its own).
func ReadListeners(dir string) ([]Listener, error) {
	var out []Listener
	for _, f := range []struct{ name, proto, state string }{
		{"tcp", man8env.TCP, stateListen}, {"tcp6", man8env.TCP, stateListen},
		{"udp", man8env.UDP, stateClose}, {"udp6", man8env.UDP, stateClose},
	} {
		path := filepath.Join(dir, f.name)
		file, err := os.Open(path)
		if os.IsNotExist(err) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("reading the listening sockets: %w", err)
		}
		ls, err := parseSockets(file, f.proto, f.state)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("reading the listening sockets in %s: %w", path, err)
		}
		out = append(out, ls...)
	}
	return out, nil
}

// parseSockets reads one /proc/net socket table and keeps the sockets in
// state whose remote end is unset.
func parseSockets(r io.Reader, proto, state string) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		if f[3] != state {
			continue
		}
		local, err := parseSockAddr(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseSockAddr(f[2])
		if err != nil {
			return nil, err
		}
		if remote.Port() != 0 || !remote.Addr().IsUnspecified() {
			continue // a connected UDP socket
		}
		out = append(out, Listener{Proto: proto, Addr: local})
	}
	return out, sc.Err()
}

// parseSockAddr reads "0100007F:1F90": the address as 32-bit words in
// the kernel's byte order (little-endian here), then the port in hex.
func parseSockAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("socket address %q: want HEXADDR:HEXPORT", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("socket address %q: %w", s, err)
	}
	for i := 0; i < len(raw); i += 4 { // each word in host order
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("socket address %q: port: %w", s, err)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
