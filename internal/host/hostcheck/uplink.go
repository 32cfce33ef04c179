package hostcheck

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"

	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/hostsetup"
	"github.com/man8s/mbctl/internal/host/uplink"
)

const (
	fixIPv4Uplink = "give the host an IPv4 default route (DHCP, or Gateway= in its uplink's .network)"
	fixRASetup    = "run `mbctl host setup`: it rewrites the bridge's router advertisements for this uplink"
)

// checkUplink reports the host's IPv4 and IPv6 default routes. No IPv4
// route is a warning: machines reach only this host, each other and the
// Yggdrasil mesh through peers on this host's links. No IPv6 route is
// Absent: an IPv4-only host is fine, its machines just do not reach the
// IPv6 internet. A bridge whose router advertisements (as `host setup`
// wrote them) do not fit the uplink is a warning.
func checkUplink(cfg config.Config, probe func() (uplink.Uplink, error)) []Result {
	const v4, v6 = "ipv4 uplink", "ipv6 uplink"
	bridge := cfg.Network.Bridge
	u, err := probe()
	var r4 Result
	switch {
	case err != nil:
		r4 = warn(v4, "", "reading the default routes: %v", err)
	case u.IPv4 == nil:
		r4 = warn(v4, fixIPv4Uplink, "no IPv4 default route: machines reach this host, each other and Yggdrasil, but not the internet over IPv4")
	default:
		r4 = ok(v4, "default route %s", u.IPv4)
	}
	dec, decErr := uplink.Decide(cfg.Network.IPv6Uplink, func() (uplink.Uplink, error) { return u, err })
	noRouter, written := bridgeNoDefaultRouter(filepath.Join(cfg.Paths.Networkd, hostsetup.NetworkFile(bridge)))
	var r6 Result
	switch {
	case decErr != nil:
		r6 = warn(v6, "", "reading the default routes: %v", decErr)
	case dec.Present && noRouter:
		r6 = warn(v6, fixRASetup, "%s, but %s's router advertisements offer the machines no default route (%s, written when the host had no IPv6)",
			ipv6How(dec), bridge, hostsetup.NoDefaultRouter)
	case dec.Present:
		r6 = ok(v6, "%s", ipv6How(dec))
	default:
		why := "no IPv6 default route (other than onto " + bridge + ")"
		if dec.Configured {
			why = "network.ipv6_uplink = no"
		}
		r6 = absent(v6, "%s: no IPv6 to the internet. Machines still get ULA addresses in fc00::/64 and reach each other over them, Yggdrasil runs over IPv4, and `machines pull` gives new machines MAN8S_IPV6=optional", why)
		if written && !noRouter {
			r6.Status, r6.Fix = Warn, fixRASetup
			r6.Detail += "; but " + bridge + "'s router advertisements still offer a default route, into nowhere"
		}
	}
	return []Result{r4, r6}
}

func ipv6How(dec uplink.IPv6) string {
	if dec.Route != nil {
		return "default route " + dec.Route.String()
	}
	return "network.ipv6_uplink = yes"
}

// bridgeNoDefaultRouter reads the bridge's .network: written is whether
// it exists, noRouter whether it has hostsetup.NoDefaultRouter.
func bridgeNoDefaultRouter(path string) (noRouter, written bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if string(bytes.TrimSpace(sc.Bytes())) == hostsetup.NoDefaultRouter {
			return true, true
		}
	}
	return false, true
}
