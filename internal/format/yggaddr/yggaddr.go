// Package yggaddr computes machines' Yggdrasil addresses (DESIGN.md
// "Addresses"): the math both mbctl and man8s-init use.
package yggaddr

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
)

// Overlay returns 200::/7, the range of every Yggdrasil address and subnet.
func Overlay() netip.Prefix { return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x02}), 7) }

// Address returns the address of the machine called name inside prefix.
//
// The prefix bits of the result are those of prefix (host bits set in
// prefix are ignored, as if the prefix had been masked first); the remaining
// 128-prefixlen low bits are the low bits of SHA-256(name as UTF-8), so for a /64
// they are the last 8 bytes of the digest. Any prefix length from 0 to 128
// works, including lengths that end inside a byte. The name is used as given:
// callers validate it first (machine.ValidateName).
//
// Address fails when prefix is not a valid IPv6 prefix; IPv4 and IPv4-mapped
// IPv6 prefixes (::ffff:0:0/96) are refused because a machine's overlay
// address is always a real IPv6 address.
func Address(prefix netip.Prefix, name string) (netip.Addr, error) {
	if err := CheckPrefix(prefix); err != nil {
		return netip.Addr{}, fmt.Errorf("computing the address of machine %q: %w", name, err)
	}
	return fill(prefix.Masked(), sha256.Sum256([]byte(name))), nil
}

// Suffix returns the host part of the machine called name: its Address in
// ::/64, as printed by `mbctl address getsuffix NAME`
// (TestBWContainer3 → ::1d44:bc13:a177:c4d).
func Suffix(name string) netip.Addr {
	return fill(netip.PrefixFrom(netip.IPv6Unspecified(), 64), sha256.Sum256([]byte(name)))
}

// Gateway returns the bridge's address in prefix, <prefix>::1: the masked
// prefix with the lowest bit set. Machines use it as their gateway into the
// overlay. It fails on what Address refuses and on a /128, which leaves no
// room for a gateway next to a machine.
func Gateway(prefix netip.Prefix) (netip.Addr, error) {
	if err := CheckPrefix(prefix); err != nil {
		return netip.Addr{}, fmt.Errorf("computing the gateway address: %w", err)
	}
	if prefix.Bits() == 128 {
		return netip.Addr{}, fmt.Errorf("computing the gateway address: prefix %s has no host bits: use a prefix of at most /127 (Yggdrasil hands out /64)", prefix)
	}
	a := prefix.Masked().Addr().As16()
	a[15] |= 1
	return netip.AddrFrom16(a), nil
}

// CheckPrefix rejects what Address and Gateway cannot work with.
func CheckPrefix(prefix netip.Prefix) error {
	switch {
	case !prefix.IsValid():
		return fmt.Errorf("prefix %q is not a valid IPv6 prefix: use the form 300:2e98:a4b0:1789::/64", prefix.String())
	case prefix.Addr().Is4():
		return fmt.Errorf("prefix %s is IPv4: use an IPv6 prefix such as 300:2e98:a4b0:1789::/64", prefix)
	case prefix.Addr().Is4In6():
		return fmt.Errorf("prefix %s is IPv4-mapped: use a plain IPv6 prefix such as 300:2e98:a4b0:1789::/64", prefix)
	}
	return nil
}

// fill takes the bits of a masked prefix and the low 128-prefixlen bits of
// digest.
func fill(prefix netip.Prefix, digest [sha256.Size]byte) netip.Addr {
	a := prefix.Addr().As16()
	low := digest[len(digest)-16:]
	bits := prefix.Bits()
	for i := range a {
		switch start := 8 * i; {
		case start+8 <= bits: // whole byte is prefix
		case start >= bits: // whole byte is host part
			a[i] = low[i]
		default: // the prefix ends inside this byte
			host := byte(0xff) >> (bits - start)
			a[i] = a[i]&^host | low[i]&host
		}
	}
	return netip.AddrFrom16(a)
}
