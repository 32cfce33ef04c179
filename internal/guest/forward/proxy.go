package forward

import (
	"encoding/binary"
	"net/netip"
)

// proxySig starts a PROXY protocol v2 header (haproxy's proxy-protocol.txt).
var proxySig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// proxyHeader returns the PROXY protocol v2 header that tells the app a
// connection (or, dgram, a datagram) came from src to dst.
func proxyHeader(src, dst netip.AddrPort, dgram bool) []byte {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	fam := byte(0x20) // AF_INET6
	alen := 36
	if sa.Is4() && da.Is4() {
		fam, alen = 0x10, 12
	} else {
		sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
	}
	if dgram {
		fam |= 0x02
	} else {
		fam |= 0x01
	}
	h := make([]byte, 0, 16+alen)
	h = append(h, proxySig[:]...)
	h = append(h, 0x21, fam) // version 2, PROXY
	h = binary.BigEndian.AppendUint16(h, uint16(alen))
	h = append(h, sa.AsSlice()...)
	h = append(h, da.AsSlice()...)
	h = binary.BigEndian.AppendUint16(h, src.Port())
	h = binary.BigEndian.AppendUint16(h, dst.Port())
	return h
}
