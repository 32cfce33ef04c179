// Command man8s-init is the init Man8S installs into every machine at
// /man8s-init/man8s-init. Under systemd-nspawn's stub init (ProcessTwo=yes)
// it loads /man8env.env, restores /run and /tmp, waits for the declared
// dependencies and supervises the application: it reaps zombies, forwards
// signals and turns nspawn's stop (SIGTERM, then SIGHUP) into the image's
// own stop signal. Before the application it configures the network
// (DHCPv4, SLAAC, Yggdrasil; see internal/guest/netinit) and keeps the DHCP lease
// for the machine's life; after it, it waits a bounded time for the TCP data
// still queued in the machine's sockets (internal/guest/drain).
// With MAN8S_INIT_MODE=exec-pid1 it runs as PID 1
// and execs the image's own init, leaving "man8s-init keep-lease" behind
// to renew the lease. See internal/guest/boot. It links only the guest and format sides (and
// fsutil, buildinfo): deps_test.go holds it there.
package main

import (
	"os"

	"github.com/man8s/mbctl/internal/guest/boot"
)

func main() {
	os.Exit(boot.Main(os.Args[1:], ""))
}
