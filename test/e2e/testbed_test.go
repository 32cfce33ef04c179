package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

const busybox = "/usr/bin/busybox"

// dhcpScript is busybox udhcpc's hook: it applies the lease and reports it.
const dhcpScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	echo "DHCPV4 $ip/$mask router=$router"
	;;
esac
`

// probeScript runs inside the container: DHCPv4 with busybox udhcpc (this
// proof only; man8s-init has its own client), then waits for SLAAC.
const probeScript = `set -e
ip link set host0 up
udhcpc -i host0 -f -q -n -t 20 -T 1 -s /udhcpc.sh
i=0
while [ $i -lt 300 ]; do
	a=$(ip -6 addr show dev host0 scope global | grep -o 'inet6 fc00::[0-9a-f:]*' || true)
	if [ -n "$a" ]; then echo "SLAAC $a"; exit 0; fi
	sleep 0.1
	i=$((i+1))
done
echo "no SLAAC address after 30s"; ip -6 addr; exit 1
`

// Proof (a): a busybox machine run by systemd-nspawn on the testbed bridge
// gets a DHCPv4 lease from networkd and an fc00::/64 SLAAC address.
func TestTestbedMachineGetsDHCPAndSLAAC(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	h := testbed.NewHostT(t, testbed.Options{})

	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := ociimage.Rootfs(rootfs, busybox); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rootfs, "udhcpc.sh"), dhcpScript, 0o755)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := stopGently(h.Command(ctx, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"-M", "probe", "-D", rootfs, "--network-bridge="+h.Bridge, "--as-pid2",
		"/bin/sh", "-c", probeScript)).CombinedOutput()
	t.Logf("container output:\n%s", out)
	if err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	lease := regexp.MustCompile(`DHCPV4 (\S+)/(\d+) router=(\S+)`).FindSubmatch(out)
	if lease == nil {
		t.Fatal("no DHCPv4 lease in the container's output")
	}
	ip := netip.MustParseAddr(string(lease[1]))
	if !h.IPv4.Contains(ip) || ip == h.IPv4.Addr() {
		t.Errorf("lease %s is not a machine address in the bridge's subnet %s", ip, h.IPv4)
	}
	if router := string(lease[3]); router != h.IPv4.Addr().String() {
		t.Errorf("lease router = %s, want the bridge %s", router, h.IPv4.Addr())
	}
	slaac := regexp.MustCompile(`SLAAC inet6 (\S+)`).FindSubmatch(out)
	if slaac == nil {
		t.Fatal("no SLAAC address in the container's output")
	}
	if a := netip.MustParseAddr(string(slaac[1])); !h.ULA.Masked().Contains(a) {
		t.Errorf("SLAAC address %s is not in %s", a, h.ULA.Masked())
	}
}

// Proof (b): `mbctl address get X`, run inside the testbed host, prints X's
// address in the testbed yggdrasil's subnet.
func TestAddressGetInTestbed(t *testing.T) {
	h := testbed.NewHostT(t, testbed.Options{})
	conf := writeConfig(t, t.TempDir(), fmt.Sprintf("[network]\nygg_admin = %q\n", h.YggAdmin))

	// The subnet as yggdrasil's own tool reports it, independently of our client.
	self, err := exec.CommandContext(t.Context(), "yggdrasilctl", "-endpoint="+h.YggAdmin, "getSelf").CombinedOutput()
	if err != nil {
		t.Fatalf("yggdrasilctl getSelf: %v\n%s", err, self)
	}
	m := regexp.MustCompile(`IPv6 subnet:\s+(\S+)`).FindSubmatch(self)
	if m == nil {
		t.Fatalf("no subnet in yggdrasilctl output:\n%s", self)
	}
	subnet := netip.MustParsePrefix(string(m[1]))
	if subnet != h.Ygg.Subnet {
		t.Errorf("our admin client read subnet %s, yggdrasilctl %s", h.Ygg.Subnet, subnet)
	}
	if a := regexp.MustCompile(`IPv6 address:\s+(\S+)`).FindSubmatch(self); a == nil || string(a[1]) != h.Ygg.Address.String() {
		t.Errorf("our admin client read address %s; yggdrasilctl says:\n%s", h.Ygg.Address, self)
	}
	prefix := strings.TrimSuffix(subnet.Addr().String(), "::")

	out, err := h.Command(t.Context(), bins.mbctl, "--config", conf, "address", "get", "TestBWContainer3").CombinedOutput()
	if err != nil {
		t.Fatalf("mbctl address get: %v\n%s", err, out)
	}
	// The suffix of the DESIGN.md test vector, after this host's prefix.
	if got, want := strings.TrimSpace(string(out)), prefix+":1d44:bc13:a177:c4d"; got != want {
		t.Errorf("mbctl address get TestBWContainer3 = %q, want %q (subnet %s)", got, want, subnet)
	}
}

// Proof (c): in the two-host variant, host A reaches host B's yggdrasil
// address over the peering link.
func TestTwoHostsPingOverYggdrasil(t *testing.T) {
	testbed.RequireT(t, busybox)
	a, b := testbed.NewPairT(t, testbed.Options{}, testbed.Options{})

	// B's node address, and B's bridge in B's subnet: the route a machine on
	// B's bridge is reached by.
	for _, target := range []netip.Addr{b.Ygg.Address, b.YggGateway()} {
		waitPing(t, a, target)
	}
}

// waitPing pings target from host h until it answers or a deadline passes
// (the yggdrasil peering takes a moment to come up).
func waitPing(t *testing.T, h *testbed.Host, target netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for {
		out, err := h.Command(ctx, busybox, "ping", "-c", "1", "-W", "1", target.String()).CombinedOutput()
		if err == nil {
			t.Logf("%s pinged %s:\n%s", h.Name, target, out)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s could not ping %s: %v\nlast output:\n%s", h.Name, target, context.Cause(ctx), out)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
