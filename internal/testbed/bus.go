package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

// busDirName is the host's dir (under Dir) holding its system bus socket.
const busDirName = "bus"

// busConfig is a system bus that lets everyone own and call anything: the
// testbed's bus serves one networkd and the tests' networkctl, all root or
// systemd-network. networkd itself checks that callers of its methods are
// privileged.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// startBus runs a private dbus-daemon as the host's system bus, so that
// `networkctl reload` reaches the host's networkd, and sets BusAddress.
func (h *Host) startBus(ctx context.Context) error {
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		return fmt.Errorf("dbus-daemon not found (apt-get install dbus): %w", err)
	}
	dir := filepath.Join(h.Dir, busDirName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// networkd (as systemd-network) sees dir as /run/dbus: it must be able
	// to enter it whatever the umask.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	sock := filepath.Join(dir, "system_bus_socket")
	confPath := filepath.Join(h.Dir, "dbus.conf")
	if err := os.WriteFile(confPath, fmt.Appendf(nil, busConfig, sock), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", confPath, err)
	}
	cmd := h.Command(context.WithoutCancel(ctx), bin, "--config-file="+confPath, "--nofork", "--nopidfile", "--nosyslog")
	p, err := proc.Start("dbus-daemon", cmd, filepath.Join(h.Dir, "dbus.log"))
	if err != nil {
		return err
	}
	h.bus = p
	if err := recordPID(h.Name, p.Pid()); err != nil {
		return err
	}
	h.BusAddress = "unix:path=" + sock
	if err := h.waitBusName(ctx, "org.freedesktop.DBus"); err != nil {
		return fmt.Errorf("dbus-daemon: %w", err)
	}
	h.log.Debug("system bus ready", "address", h.BusAddress)
	return nil
}

// waitBusName polls the host's bus until name has an owner.
func (h *Host) waitBusName(ctx context.Context, name string) error {
	var last string
	for {
		out, err := exec.CommandContext(ctx, "busctl", "--address="+h.BusAddress, "call",
			"org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", name).CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "b true" {
			return nil
		}
		last = strings.TrimSpace(string(out))
		if h.bus != nil {
			if exitErr := h.bus.Exited(); exitErr != nil {
				return exitErr
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s on the bus %s: %w (last answer: %s)", name, h.BusAddress, context.Cause(ctx), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
