// Package initinstall installs man8s-init, and a static busybox as a debug
// shell, into a machine's root filesystem at /man8s-init/, and gives the
// tree what systemd-nspawn needs to run it (an empty /usr when it has none).
//
// # Where the init comes from
//
// Locate looks, in this order, for:
//
//  1. the configured binary (config machines.init or $MBCTL_INIT, which the
//     caller passes as cfgInit);
//  2. man8s-init beside the running mbctl (bin/ of a build tree);
//  3. <dir of mbctl>/../lib/man8s/man8s-init (what `make install` installs);
//  4. mbctl itself: mbctl is a multi-call binary that runs man8s-init when
//     it is started under that name, so a plain `go install ./cmd/mbctl`
//     still gets a working install.
//
// Every candidate must be a statically linked executable (no ELF program
// interpreter): it has to run in images without a libc.
//
// # What systemd-nspawn needs of the tree
//
// Started with --directory and without Boot=yes (how every machine runs),
// systemd-nspawn checks one thing of the tree before it starts: that
// DIR/usr/ exists ("Directory ... doesn't look like it has an OS tree (/usr/
// directory is missing). Refusing."; src/nspawn/nspawn.c, run()). The
// os-release check (path_is_os_tree) applies only with Boot=yes. Images
// built FROM scratch (a static binary, /etc/passwd) have no /usr, so
// Install creates an empty one, 0755 and owned by uid 0, which the machine
// sees as its root (PrivateUsersOwnership=map); the app sees nothing else
// added. nspawn itself then makes the missing /etc, /var, /proc, ... when
// it starts (base_filesystem_create), as it does for every tree.
//
// # Safety
//
// The rootfs belongs to an image and may be hostile: /man8s-init or /bin may
// be symbolic links pointing anywhere. Install works on directory file
// descriptors and never follows a link out of the rootfs: a /man8s-init that
// is not a real directory is replaced by one, and /bin is resolved as if the
// rootfs were "/".
package initinstall

import (
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/fsutil"
)

// Paths inside the rootfs that Install writes (and the shell it links).
const (
	InitPath    = man8env.InitPath
	BusyboxPath = man8env.BusyboxPath
	ShellPath   = appargs.ShellPath
)

// InitName is the name under which mbctl runs as man8s-init.
const InitName = "man8s-init"

// Sources are the host files Install copies.
type Sources struct {
	// Init is the man8s-init binary; InitFrom says where it was found
	// ("configured", "beside mbctl", "PREFIX/lib/man8s", "multi-call mbctl").
	Init, InitFrom string
	// Busybox is a static busybox, or "" when there is none.
	Busybox string
}

// Where the init was found (Sources.InitFrom).
const (
	FromConfig    = "configured"
	FromBeside    = "beside mbctl"
	FromLib       = "PREFIX/lib/man8s"
	FromMultiCall = "multi-call mbctl"
)

// Locate finds the init and busybox to install. cfgInit is the configured
// init ("" for none: search); cfgBusybox the configured busybox, used if it
// exists and is static, else "busybox" is looked up with lookPath. No
// static busybox is not an error (Sources.Busybox is then "").
func Locate(cfgInit, cfgBusybox string, lookPath func(string) (string, error)) (Sources, error) {
	exe, err := os.Executable()
	if err != nil {
		return Sources{}, fmt.Errorf("finding the running mbctl: %w", err)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return locate(exe, cfgInit, cfgBusybox, lookPath)
}

func locate(exe, cfgInit, cfgBusybox string, lookPath func(string) (string, error)) (Sources, error) {
	var src Sources
	init, from, err := locateInit(exe, cfgInit)
	if err != nil {
		return Sources{}, err
	}
	src.Init, src.InitFrom = init, from
	src.Busybox = locateBusybox(cfgBusybox, lookPath)
	return src, nil
}

func locateInit(exe, cfgInit string) (path, from string, err error) {
	if cfgInit != "" {
		if err := CheckStatic(cfgInit); err != nil {
			return "", "", fmt.Errorf("configured man8s-init: %w", err)
		}
		return cfgInit, FromConfig, nil
	}
	dir := filepath.Dir(exe)
	for _, c := range []struct{ path, from string }{
		{filepath.Join(dir, InitName), FromBeside},
		{filepath.Join(filepath.Dir(dir), "lib", "man8s", InitName), FromLib},
	} {
		if _, err := os.Stat(c.path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := CheckStatic(c.path); err != nil {
			return "", "", fmt.Errorf("man8s-init %s: %w", c.from, err)
		}
		return c.path, c.from, nil
	}
	if err := CheckStatic(exe); err != nil {
		return "", "", fmt.Errorf("no man8s-init beside mbctl or in %s, and mbctl itself cannot serve as one: %w (install it with `make install`, or set machines.init in the config)",
			filepath.Join(filepath.Dir(dir), "lib", "man8s"), err)
	}
	return exe, FromMultiCall, nil
}

func locateBusybox(cfgBusybox string, lookPath func(string) (string, error)) string {
	if cfgBusybox != "" && CheckStatic(cfgBusybox) == nil {
		return cfgBusybox
	}
	if lookPath == nil {
		return ""
	}
	if p, err := lookPath("busybox"); err == nil && CheckStatic(p) == nil {
		return p
	}
	return ""
}

// CheckStatic returns nil if path is an executable regular file without an
// ELF program interpreter (statically linked): what man8s-init and busybox
// must be to be copied into an image. mbctl host check uses it too.
func CheckStatic(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	static, err := IsStatic(path)
	if err != nil {
		return err
	}
	if !static {
		return fmt.Errorf("%s is dynamically linked; it would not run in an image without a libc", path)
	}
	return nil
}

// IsStatic reports whether the ELF file at path has no program interpreter,
// that is, runs without a dynamic loader and libc.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("reading ELF file %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// Result says what Install wrote, as paths inside the rootfs.
type Result struct {
	// Init is InitPath.
	Init string
	// Busybox is BusyboxPath, or "" when no busybox was installed.
	Busybox string
	// ShellLink is true when /bin/sh -> /man8s-init/busybox was created
	// (the image had no /bin/sh).
	ShellLink bool
	// MadeUsr is true when an empty /usr was created (the image had none;
	// see "What systemd-nspawn needs of the tree").
	MadeUsr bool
}

// Install copies src into the rootfs at rootfs: man8s-init to InitPath and,
// if src has one, busybox to BusyboxPath (both mode 0755). Each file is
// written to a temporary file in /man8s-init, synced and renamed over the
// old one, so a running machine keeps a complete binary. If the image has no
// /bin/sh at all (not even a dangling link), /bin/sh is made a link to the
// busybox, creating /bin (0755) if it is missing. If the rootfs has nothing
// at /usr, an empty /usr is created (see ensureUsr).
func Install(rootfs string, src Sources) (res Result, err error) {
	if src.Init == "" {
		return Result{}, errors.New("installing man8s-init: no init binary given")
	}
	root, err := unix.Open(rootfs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("installing man8s-init into %s: %w", rootfs, &os.PathError{Op: "open", Path: rootfs, Err: err})
	}
	defer unix.Close(root)
	if res.MadeUsr, err = ensureUsr(root); err != nil {
		return Result{}, fmt.Errorf("preparing %s for systemd-nspawn: %w", rootfs, err)
	}
	dir, err := ensureDir(root, man8env.InitDir[1:])
	if err != nil {
		return Result{}, fmt.Errorf("installing man8s-init into %s: %s: %w", rootfs, man8env.InitDir, err)
	}
	defer unix.Close(dir)

	if err := copyInto(dir, InitName, src.Init); err != nil {
		return Result{}, fmt.Errorf("installing %s into %s: %w", InitPath, rootfs, err)
	}
	res.Init = InitPath
	if src.Busybox == "" {
		return res, nil
	}
	if err := copyInto(dir, "busybox", src.Busybox); err != nil {
		return res, fmt.Errorf("installing %s into %s: %w", BusyboxPath, rootfs, err)
	}
	res.Busybox = BusyboxPath
	if res.ShellLink, err = linkShell(root); err != nil {
		return res, fmt.Errorf("linking %s to %s in %s: %w", ShellPath, BusyboxPath, rootfs, err)
	}
	return res, nil
}

// ensureUsr creates /usr (0755, uid and gid 0) in root when there is
// nothing at all there, and reports whether it did: systemd-nspawn refuses
// a tree without /usr/. A /usr that is a directory or a symbolic link is
// the image's and stays as it is; a file or a device there is an error,
// since nspawn would refuse the tree.
func ensureUsr(root int) (bool, error) {
	var st unix.Stat_t
	switch err := unix.Fstatat(root, "usr", &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		if t := st.Mode & unix.S_IFMT; t == unix.S_IFDIR || t == unix.S_IFLNK {
			return false, nil
		}
		return false, errors.New("/usr is not a directory, and systemd-nspawn runs only a tree with a /usr/ directory")
	case !errors.Is(err, unix.ENOENT):
		return false, fmt.Errorf("/usr: %w", err)
	}
	if err := unix.Mkdirat(root, "usr", 0o755); err != nil {
		return false, fmt.Errorf("creating /usr: %w", err)
	}
	fd, err := fsutil.OpenChild(root, "usr", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return true, fmt.Errorf("opening the new /usr: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, 0o755); err != nil { // the umask may have taken bits
		return true, fmt.Errorf("/usr: %w", err)
	}
	// Owned by uid 0 on disk is owned by root in the machine
	// (PrivateUsersOwnership=map). Mkdir gave it mbctl's ids, which are
	// root's unless the rootfs's dir is setgid; without root nobody can
	// give it away, nor run the tree as a machine.
	if err := unix.Fstat(fd, &st); err != nil {
		return true, fmt.Errorf("/usr: %w", err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		if err := unix.Fchown(fd, 0, 0); err != nil && !(errors.Is(err, unix.EPERM) && os.Geteuid() != 0) {
			return true, fmt.Errorf("giving /usr to root: %w", err)
		}
	}
	return true, unix.Fsync(root)
}

// ensureDir opens the directory name directly in root, replacing anything
// there that is not a real directory (a file, or a symbolic link that may
// point out of the rootfs) with a new directory (0755).
func ensureDir(root int, name string) (int, error) {
	fd, err := fsutil.OpenChild(root, name, unix.O_RDONLY|unix.O_DIRECTORY)
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR):
		// A symbolic link or a file: not ours to follow.
		if err := unix.Unlinkat(root, name, 0); err != nil {
			return -1, fmt.Errorf("removing what is not a directory: %w", err)
		}
	case !errors.Is(err, unix.ENOENT):
		return -1, err
	}
	if err := unix.Mkdirat(root, name, 0o755); err != nil {
		return -1, fmt.Errorf("creating directory: %w", err)
	}
	fd, err = fsutil.OpenChild(root, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	if err := unix.Fchmod(fd, 0o755); err != nil { // the umask may have taken bits
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// copyInto copies the host file src to name in dir (mode 0755), atomically:
// a temporary file in dir is written, synced and renamed over name.
func copyInto(dir int, name, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	tmp := "." + name + ".tmp" + hex.EncodeToString(suffix[:])
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o700)
	if err != nil {
		return fmt.Errorf("creating a temporary file: %w", err)
	}
	out := os.NewFile(uintptr(fd), tmp)
	defer func() {
		if out != nil {
			out.Close()
		}
		if err != nil {
			_ = unix.Unlinkat(dir, tmp, 0)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Chmod(0o755); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	err = out.Close()
	out = nil
	if err != nil {
		return err
	}
	if err := unix.Renameat(dir, tmp, dir, name); err != nil {
		return fmt.Errorf("renaming into place: %w", err)
	}
	return unix.Fsync(dir)
}

// linkShell creates /bin/sh -> BusyboxPath if there is nothing at /bin/sh.
// /bin is resolved inside the rootfs (it may be a link to usr/bin) and
// created if it does not exist at all.
func linkShell(root int) (bool, error) {
	bin, err := fsutil.OpenInRoot(root, "bin", unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		var st unix.Stat_t
		if lerr := unix.Fstatat(root, "bin", &st, unix.AT_SYMLINK_NOFOLLOW); lerr == nil {
			return false, errors.New("/bin is a link to a directory that does not exist")
		}
		if err := unix.Mkdirat(root, "bin", 0o755); err != nil {
			return false, fmt.Errorf("creating /bin: %w", err)
		}
		bin, err = fsutil.OpenChild(root, "bin", unix.O_RDONLY|unix.O_DIRECTORY)
		if err == nil {
			err = unix.Fchmod(bin, 0o755)
		}
	}
	if err != nil {
		return false, fmt.Errorf("opening /bin: %w", err)
	}
	defer unix.Close(bin)
	var st unix.Stat_t
	switch err := unix.Fstatat(bin, "sh", &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		return false, nil // the image's own shell, or a link left by an earlier install
	case !errors.Is(err, unix.ENOENT):
		return false, err
	}
	if err := unix.Symlinkat(BusyboxPath, bin, "sh"); err != nil {
		return false, err
	}
	return true, unix.Fsync(bin)
}
