package testbed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	systemdconfigs "github.com/man8s/mbctl/systemd-configs"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

const networkdPath = "/lib/systemd/systemd-networkd"

// networkdScript runs as root in a private mount namespace inside the host's
// network namespace and turns into systemd-networkd. A tmpfs on /run/systemd
// gives networkd its own state; /etc/systemd/network shows only our files;
// a fresh read-only sysfs shows this namespace's links and tells networkd
// not to wait for udev. A third argument is the dir of the host's private
// system bus socket, shown as /run/dbus: networkd runs as systemd-network
// and could not reach it inside the testbed's private dir.
const networkdScript = `set -e
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount --bind "$1" /etc/systemd/network
mount -t sysfs -o ro sysfs /sys
if [ -n "$3" ]; then mount --bind "$3" /run/dbus; fi
exec "$2"
`

// startNetworkd runs networkd and, withBridge, renders the shipped bridge
// configuration with this host's values first and waits until the bridge
// has its addresses; without, it waits until networkd is on the bus.
func (h *Host) startNetworkd(ctx context.Context, opts Options) error {
	withBridge := !opts.NoBridge
	h.NetworkDir = filepath.Join(h.Dir, "network")
	if err := os.MkdirAll(h.NetworkDir, 0o755); err != nil {
		return err
	}
	if withBridge {
		if err := h.renderNetworkConfig(h.NetworkDir, opts); err != nil {
			return err
		}
	}
	if _, err := os.Stat(networkdPath); err != nil {
		return fmt.Errorf("systemd-networkd not found (apt-get install systemd): %w", err)
	}
	busDir := ""
	if h.BusAddress != "" {
		busDir = filepath.Join(h.Dir, busDirName)
	}
	logPath := filepath.Join(h.Dir, "networkd.log")
	p, err := launchNetworkd(ctx, h.Command, h.Name, h.NetworkDir, busDir, logPath)
	if err != nil {
		return err
	}
	h.networkd = p
	waitCtx, cancel := whileRunning(ctx, p)
	defer cancel(nil)
	if !withBridge {
		if err := h.waitBusName(waitCtx, "org.freedesktop.network1"); err != nil {
			return fmt.Errorf("systemd-networkd: %w (log: %s)", err, logPath)
		}
		return nil
	}
	want := []netip.Addr{h.IPv4.Addr(), h.ULA.Addr(), h.YggGateway()}
	if err := waitAddrs(waitCtx, h.Name, h.Bridge, want); err != nil {
		return fmt.Errorf("systemd-networkd did not configure %s: %w (log: %s)", h.Bridge, err, logPath)
	}
	h.log.Debug("networkd configured the bridge", "bridge", h.Bridge, "addrs", want)
	return nil
}

// launchNetworkd starts systemd-networkd in the network namespace that
// command enters (recorded as testbed nsName's, for the sweep), reading
// networkDir as /etc/systemd/network, logging to logPath; busDir, if not
// empty, is the dir of a private system bus socket.
func launchNetworkd(ctx context.Context, command func(context.Context, string, ...string) *exec.Cmd, nsName, networkDir, busDir, logPath string) (*proc.Proc, error) {
	cmd := command(context.WithoutCancel(ctx), "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", networkdScript, "sh", networkDir, networkdPath, busDir)
	// networkd finds the bus at /run/dbus (see networkdScript), not at
	// BusAddress, which lies in a dir that only root may enter.
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=debug")
	p, err := proc.Start("systemd-networkd", cmd, logPath)
	if err != nil {
		return nil, err
	}
	if err := recordPID(nsName, p.Pid()); err != nil {
		return nil, errors.Join(err, p.Stop(5*time.Second))
	}
	return p, nil
}

// WaitAddrs waits until link ifname of the host holds every address in
// want (tentative ones count), or ctx ends.
func (h *Host) WaitAddrs(ctx context.Context, ifname string, want ...netip.Addr) error {
	return waitAddrs(ctx, h.Name, ifname, want)
}

// renderNetworkConfig writes the shipped .netdev/.network into dir with
// the placeholders replaced by this host's values.
func (h *Host) renderNetworkConfig(dir string, opts Options) error {
	pairs := []string{
		systemdconfigs.BridgeIPv4, h.IPv4.String(),
		systemdconfigs.BridgeULA, h.ULA.String(),
		systemdconfigs.YggGateway, netip.PrefixFrom(h.YggGateway(), 128).String(),
		systemdconfigs.YggSubnet, h.Ygg.Subnet.Masked().String(),
		"Name=" + systemdconfigs.BridgeName, "Name=" + h.Bridge,
	}
	if opts.DHCPLeaseTime > 0 {
		secs := fmt.Sprint(int(opts.DHCPLeaseTime.Seconds()))
		pairs = append(pairs, "DefaultLeaseTimeSec=86400", "DefaultLeaseTimeSec="+secs, "MaxLeaseTimeSec=86400", "MaxLeaseTimeSec="+secs)
	}
	if opts.NoRouterAdvertisements {
		pairs = append(pairs, "IPv6SendRA=yes", "IPv6SendRA=no")
	}
	if len(opts.DHCPDNS) > 0 {
		dns := "EmitDNS=yes"
		for _, a := range opts.DHCPDNS {
			dns += "\nDNS=" + a.String()
		}
		pairs = append(pairs, "EmitDNS=yes", dns)
	}
	r := strings.NewReplacer(pairs...)
	return fs.WalkDir(systemdconfigs.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) == ".conf" {
			return err
		}
		data, err := fs.ReadFile(systemdconfigs.Files, path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), []byte(r.Replace(string(data))), 0o644)
	})
}

// whileRunning returns a context that ends, with p's exit as the cause,
// when p exits: a wait for what p should do stops at once if p dies.
func whileRunning(ctx context.Context, p *proc.Proc) (context.Context, context.CancelCauseFunc) {
	waitCtx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-p.Done():
			cancel(p.Exited())
		case <-waitCtx.Done():
		}
	}()
	return waitCtx, cancel
}
