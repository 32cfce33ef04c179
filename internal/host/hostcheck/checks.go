package hostcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/yggadmin"
	systemdconfigs "github.com/man8s/mbctl/systemd-configs"
)

// MinNspawnVersion is the oldest systemd whose nspawn understands what
// Man8S writes into settings files (Bind=...:idmap, PrivateUsersOwnership=map).
const MinNspawnVersion = 250

// bridgeULA is the bridge's host side of the machines' ULA prefix.
var bridgeULA = netip.MustParsePrefix(systemdconfigs.BridgeULA)

const (
	fixSetup       = "run `mbctl host setup`, and start systemd-networkd if it is not running"
	fixNspawn      = "install systemd-nspawn: `apt-get install systemd-container` (Debian) or `pacman -S systemd` (Arch)"
	fixYgg         = "install yggdrasil (package yggdrasil on Debian and Arch), `systemctl enable --now yggdrasil`, and set network.ygg_admin to its admin socket if it is not the default"
	fixNetworkd    = "start it: `systemctl enable --now systemd-networkd`"
	hintGzip       = "for faster pulls, rebuild mbctl with ISA-L: install gcc and libisal-dev (Arch: isa-l), then `make build install`"
	fixBusybox     = "install a static busybox (`apt-get install busybox-static` or `pacman -S busybox`) or set machines.busybox; without it, images without a shell get none"
	fixRoot        = "run `mbctl host check` as root"
	fixForwarding  = "run `mbctl host setup`, or `sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1`"
	fixUsernsLimit = "allow user namespaces: `sysctl -w user.max_user_namespaces=65536` (and persist it in /etc/sysctl.d)"
)

var nspawnVersionRE = regexp.MustCompile(`^systemd (\d+)(?: \(([^)]*)\))?`)

func checkNspawn(ctx context.Context, p Probes) Result {
	const name = "systemd-nspawn"
	path, err := p.LookPath("systemd-nspawn")
	if err != nil {
		return fail(name, fixNspawn, "not found on PATH")
	}
	out, err := p.Output(ctx, path, "--version")
	if err != nil {
		return fail(name, fixNspawn, "%s --version: %v", path, err)
	}
	m := nspawnVersionRE.FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil {
		first, _, _ := strings.Cut(string(out), "\n")
		return warn(name, "", "%s: cannot read the version from %q", path, first)
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return warn(name, "", "%s: version %q is not a number", path, m[1])
	}
	version := m[1]
	if m[2] != "" {
		version = m[2]
	}
	if v < MinNspawnVersion {
		return fail(name, fmt.Sprintf("upgrade systemd to %d or newer", MinNspawnVersion),
			"%s is systemd %s; Bind=...:idmap needs systemd %d or newer", path, version, MinNspawnVersion)
	}
	return ok(name, "%s, systemd %s", path, version)
}

func checkUserns(ctx context.Context, p Probes) Result {
	const name = "user namespaces"
	limitPath := filepath.Join(p.Proc, "sys/user/max_user_namespaces")
	data, err := os.ReadFile(limitPath)
	if errors.Is(err, os.ErrNotExist) {
		return fail(name, "use a kernel built with CONFIG_USER_NS=y", "%s does not exist", limitPath)
	}
	if err != nil {
		return fail(name, "", "reading %s: %v", limitPath, err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fail(name, "", "%s holds %q, not a number", limitPath, strings.TrimSpace(string(data)))
	}
	if limit == 0 {
		return fail(name, fixUsernsLimit, "disabled: user.max_user_namespaces is 0")
	}
	if p.Geteuid() != 0 {
		return warn(name, fixRoot, "up to %d allowed; creating one needs root to verify", limit)
	}
	if err := p.Userns(ctx); err != nil {
		return fail(name, "check that no security module or seccomp filter forbids CLONE_NEWUSER", "creating a user namespace: %v", err)
	}
	return ok(name, "a user namespace was created (up to %d allowed)", limit)
}

// checkIdmap probes idmapped mounts on the filesystems of the dirs that
// machines' settings files bind with :idmap (config and storage dirs).
func checkIdmap(ctx context.Context, cfg config.Config, p Probes) Result {
	const name = "idmapped mounts"
	if p.Geteuid() != 0 {
		return warn(name, fixRoot, "probing needs root")
	}
	var probed []string
	for _, d := range []string{cfg.Paths.Configs, cfg.Paths.Storage} {
		dir := existingAncestor(d)
		if err := p.Idmap(ctx, dir); err != nil {
			fix := "use Linux 5.12 or newer and a filesystem that supports idmapped mounts (ext4, xfs, btrfs; tmpfs from Linux 6.3)"
			return fail(name, fix, "idmapped mount of %s (for %s, %s): %v", dir, d, fsName(dir), err)
		}
		probed = append(probed, fmt.Sprintf("%s (%s)", dir, fsName(dir)))
	}
	return ok(name, "work on %s", strings.Join(dedup(probed), ", "))
}

func checkYgg(cfg config.Config, subnet netip.Prefix, source string, err error) Result {
	const name = "yggdrasil"
	switch {
	case err != nil:
		return fail(name, fixYgg, "subnet unknown: %v", err)
	case source == yggadmin.SubnetFromConfig:
		return warn(name, fixYgg, "node at %s unreachable; using network.ygg_prefix %s", cfg.Network.YggAdmin, subnet)
	}
	return ok(name, "subnet %s (from %s)", subnet, cfg.Network.YggAdmin)
}

// checkMacvlanUplink checks network.uplink, the macvlan template's interface on
// the LAN: it must exist, and be up for the machines to reach the LAN.
func checkMacvlanUplink(uplink string, links Links) Result {
	name := "uplink " + uplink
	const fix = "set network.uplink to the host's interface on the LAN ('ip link' lists them), or leave it empty without macvlan machines"
	link, err := links.LinkByName(uplink)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fail(name, fix, "%s does not exist", uplink)
		}
		return fail(name, "", "reading link %s: %v", uplink, err)
	}
	if t := link.Type(); t == "bridge" || t == "macvlan" {
		return warn(name, fix, "%s is a %s: macvlan machines need the Ethernet interface itself", uplink, t)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return warn(name, "ip link set "+uplink+" up", "%s is down: macvlan machines on it reach nothing", uplink)
	}
	return ok(name, "%s (%s) for macvlan machines", uplink, link.Type())
}

func checkBridge(bridge string, subnet netip.Prefix, subnetErr error, links Links) Result {
	name := "bridge " + bridge
	link, err := links.LinkByName(bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return fail(name, fixSetup, "%s does not exist", bridge)
		}
		return fail(name, "", "reading link %s: %v", bridge, err)
	}
	if t := link.Type(); t != "bridge" {
		return fail(name, fmt.Sprintf("remove the %s link %s or set network.bridge to another name, then %s", t, bridge, fixSetup), "%s is a %s, not a bridge", bridge, t)
	}
	addrs, err := links.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return fail(name, "", "reading the addresses of %s: %v", bridge, err)
	}
	have := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, okIP := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		if okIP {
			have[netip.PrefixFrom(ip.Unmap(), bits)] = true
		}
	}
	want := []netip.Prefix{bridgeULA}
	var gw netip.Prefix
	if subnetErr == nil {
		if g, err := yggaddr.Gateway(subnet); err == nil {
			gw = netip.PrefixFrom(g, g.BitLen())
			want = append([]netip.Prefix{gw}, want...)
		}
	}
	var missing, found []string
	for _, w := range want {
		label := "ULA " + w.String()
		if w == gw {
			label = "ygg gateway " + w.String()
		}
		if have[w] {
			found = append(found, label)
		} else {
			missing = append(missing, label)
		}
	}
	if len(missing) > 0 {
		return fail(name, fixSetup, "%s lacks %s", bridge, strings.Join(missing, " and "))
	}
	if !gw.IsValid() {
		return warn(name, fixYgg, "has %s; the ygg gateway is unknown without the yggdrasil subnet", strings.Join(found, ", "))
	}
	return ok(name, "has %s", strings.Join(found, ", "))
}

func checkForwarding(proc string) Result {
	const name = "forwarding"
	var off, on []string
	for _, key := range []string{"net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward"} {
		path := filepath.Join(proc, "sys", strings.ReplaceAll(key, ".", "/"))
		data, err := os.ReadFile(path)
		if err != nil {
			return fail(name, "", "reading %s: %v", path, err)
		}
		if strings.TrimSpace(string(data)) == "1" {
			on = append(on, key)
		} else {
			off = append(off, key)
		}
	}
	if len(off) > 0 {
		return fail(name, fixForwarding, "%s = 0", strings.Join(off, " and "))
	}
	return ok(name, "%s = 1", strings.Join(on, ", "))
}

func checkNetworkd(proc string) Result {
	const name = "systemd-networkd"
	pid, err := NetworkdPID(proc)
	switch {
	case err != nil:
		return fail(name, "", "%v", err)
	case pid == 0:
		return fail(name, fixNetworkd, "not running in this network namespace")
	}
	return ok(name, "running (pid %d)", pid)
}

// NetworkdPID returns the pid of a systemd-networkd that runs in the
// caller's network namespace, or 0 when there is none. proc is procfs.
func NetworkdPID(proc string) (int, error) {
	self, err := os.Readlink(filepath.Join(proc, "self/ns/net"))
	if err != nil {
		return 0, fmt.Errorf("reading our network namespace: %w", err)
	}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, fmt.Errorf("listing processes in %s: %w", proc, err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// comm is cut at 15 characters: "systemd-network".
		comm, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "systemd-network" {
			continue // gone meanwhile, or another program
		}
		if ns, err := os.Readlink(filepath.Join(proc, e.Name(), "ns/net")); err == nil && ns == self {
			return pid, nil
		}
	}
	return 0, nil
}

// checkGzip reports mbctl's gzip engine (package gunzip). It is a property
// of the build, not of the host, so it never fails: pure Go works, and
// pulls with ISA-L take about a third less time.
func checkGzip(engine string, fast bool) Result {
	const name = "gzip decompression"
	if fast {
		return ok(name, "%s", engine)
	}
	return ok(name, "%s (pure Go; %s)", engine, hintGzip)
}

func checkBusybox(configured string, p Probes) Result {
	const name = "static busybox"
	var notes []string
	// The test initinstall applies when it copies busybox into an image.
	try := func(path string) bool {
		err := p.CheckStatic(path)
		if err != nil {
			notes = append(notes, err.Error())
		}
		return err == nil
	}
	if configured != "" {
		if _, err := os.Stat(configured); err == nil && try(configured) {
			return ok(name, "%s", configured)
		} else if err != nil {
			notes = append(notes, fmt.Sprintf("machines.busybox %s does not exist", configured))
		}
	}
	if path, err := p.LookPath("busybox"); err == nil && path != configured {
		if try(path) {
			return ok(name, "%s (on PATH)", path)
		}
	}
	if len(notes) == 0 {
		notes = append(notes, "none found")
	}
	return warn(name, fixBusybox, "%s", strings.Join(notes, "; "))
}

// checkDirs checks that every directory of paths is writable, or can be
// created: a missing dir whose nearest existing parent is writable is fine.
func checkDirs(paths config.Paths) Result {
	const name = "directories"
	var bad, created []string
	n := 0
	pv := reflect.ValueOf(paths)
	for i := range pv.NumField() {
		key := "paths." + pv.Type().Field(i).Tag.Get("toml")
		dir := pv.Field(i).String()
		n++
		st, err := os.Stat(dir)
		switch {
		case err == nil && !st.IsDir():
			bad = append(bad, fmt.Sprintf("%s %s is not a directory", key, dir))
		case err == nil:
			if err := probeWrite(dir); err != nil {
				bad = append(bad, fmt.Sprintf("%s %s: %v", key, dir, err))
			}
		case errors.Is(err, os.ErrNotExist):
			parent := existingAncestor(dir)
			if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
				bad = append(bad, fmt.Sprintf("%s %s is missing and %s is not writable: %v", key, dir, parent, err))
			} else {
				created = append(created, key)
			}
		default:
			bad = append(bad, fmt.Sprintf("%s %s: %v", key, dir, err))
		}
	}
	if len(bad) > 0 {
		return fail(name, "run as root, or point these config keys at writable directories (`mbctl config show`)", "%s", strings.Join(bad, "; "))
	}
	if len(created) > 0 {
		return ok(name, "%d writable; missing but can be created: %s", n-len(created), strings.Join(created, ", "))
	}
	return ok(name, "all %d writable", n)
}

// probeWrite creates and removes a temp file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".mbctl-check-*")
	if err != nil {
		return err
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// existingAncestor returns path or its nearest ancestor that exists.
func existingAncestor(path string) string {
	for {
		if _, err := os.Lstat(path); err == nil {
			return path
		}
		parent := filepath.Dir(path)
		if parent == path {
			return path
		}
		path = parent
	}
}

// fsName names the filesystem type of path, for error messages.
func fsName(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "filesystem unknown"
	}
	names := map[int64]string{
		unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
		unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
		unix.NFS_SUPER_MAGIC: "nfs", unix.F2FS_SUPER_MAGIC: "f2fs", unix.FUSE_SUPER_MAGIC: "fuse",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("filesystem 0x%x", st.Type)
}

func dedup(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
