package hostcheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/host/uplink"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

// Default returns the probes of this host for cfg: procfs at /proc,
// netlink in the caller's network namespace, programs from PATH. Call close
// when done.
func Default(cfg config.Config) (p Probes, close func() error, err error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return Probes{}, nil, fmt.Errorf("opening netlink: %w", err)
	}
	p = Probes{
		Proc:  "/proc",
		Links: h,
		Output: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).Output()
		},
		LookPath: exec.LookPath,
		Subnet: func(ctx context.Context) (netip.Prefix, string, error) {
			return yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix)
		},
		Userns: func(ctx context.Context) error {
			fd, err := NewUserns(ctx)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		},
		Idmap:       ProbeIdmap,
		CheckStatic: initinstall.CheckStatic,
		Geteuid:     os.Geteuid,
		Uplink:      func() (uplink.Uplink, error) { return uplink.Probe(h, cfg.Network.Bridge) },
	}
	return p, func() error { h.Close(); return nil }, nil
}

// usernsBase is where the probe's user namespace maps its ids on the host:
// the top of the range systemd-nspawn picks from, unused by real users.
const usernsBase = 0x7ffe0000

// NewUserns returns a file descriptor of a new user namespace that maps ids
// 0-65535 to host ids from usernsBase. It starts a child in a new user
// namespace that is stopped by ptrace at its exec (so nothing runs), opens
// its namespace and kills it. Needs root.
func NewUserns(ctx context.Context) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return -1, fmt.Errorf("finding a program to hold the user namespace: %w", err)
	}
	idmap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: usernsBase, Size: 65536}}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Args = []string{"mbctl-userns-probe"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: idmap,
		GidMappings: idmap,
		// Stop the child at its exec: it never runs a single instruction of
		// the program.
		Ptrace:    true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("starting a process in a new user namespace: %w", err)
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
	fd, openErr := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	killErr := cmd.Process.Kill()
	_ = cmd.Wait() // killed: the error says so
	if openErr != nil {
		return -1, fmt.Errorf("opening %s: %w", nsPath, openErr)
	}
	if killErr != nil && !errors.Is(killErr, os.ErrProcessDone) {
		unix.Close(fd)
		return -1, fmt.Errorf("stopping the user namespace's process %d: %w", cmd.Process.Pid, killErr)
	}
	return fd, nil
}

// ProbeIdmap makes an idmapped mount of dir the way systemd-nspawn does
// for Bind=...:idmap: a detached clone of the mount (open_tree) given a
// user namespace's id mapping (mount_setattr with MOUNT_ATTR_IDMAP). The
// clone is never attached anywhere and vanishes when its descriptor is
// closed. Fails where the kernel or dir's filesystem lacks idmapped mounts.
func ProbeIdmap(ctx context.Context, dir string) error {
	userns, err := NewUserns(ctx)
	if err != nil {
		return err
	}
	defer unix.Close(userns)
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", dir, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("mount_setattr: %w (the kernel is older than 5.12)", err)
		}
		return fmt.Errorf("mount_setattr MOUNT_ATTR_IDMAP: %w", err)
	}
	return nil
}
