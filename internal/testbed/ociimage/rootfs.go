package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BusyboxApplets returns the applets that get a symlink /bin/NAME →
// /bin/busybox in the busybox rootfs. All of them exist in Debian's
// busybox-static.
func BusyboxApplets() []string {
	return []string{
		"[", "ash", "awk", "base64", "basename", "cat", "chgrp", "chmod", "chown",
		"cp", "cut", "date", "dd", "df", "diff", "dirname", "dmesg", "du", "echo",
		"egrep", "env", "expr", "false", "find", "free", "grep", "gunzip", "gzip",
		"head", "hexdump", "hostname", "httpd", "id", "ifconfig", "ip", "kill",
		"killall", "less", "ln", "ls", "md5sum", "mkdir", "mkfifo", "mknod",
		"mktemp", "more", "mount", "mv", "nc", "netstat", "nslookup", "od",
		"pidof", "ping", "ping6", "printf", "ps", "pwd", "readlink", "realpath",
		"rm", "rmdir", "route", "sed", "seq", "setsid", "sh", "sha256sum", "sleep",
		"sort", "stat", "sync", "tail", "tar", "tee", "test", "timeout", "top",
		"touch", "tr", "true", "udhcpc", "umount", "uname", "uniq", "usleep", "vi",
		"watch", "wc", "wget", "which", "whoami", "xargs", "yes",
	}
}

// OSRelease is the content of /etc/os-release in the busybox rootfs;
// systemd-nspawn wants an os-release file before it accepts a directory as
// an OS tree.
const OSRelease = `NAME="Man8S testbed busybox"
ID=man8s-testbed
VERSION_ID=1
PRETTY_NAME="Man8S testbed busybox 1"
`

// BusyboxEntries returns the entries of the minimal busybox rootfs, parents
// before children: the directories /bin, /dev, /etc, /proc, /root (0700),
// /run, /sys, /tmp (1777), /usr, /usr/bin, /usr/sbin, /var, /var/tmp (1777);
// busybox (the content of a static busybox binary) at /bin/busybox with
// symlinks for BusyboxApplets; /etc/passwd and /etc/group with root and
// nobody; /etc/os-release (OSRelease). Everything is owned by root.
func BusyboxEntries(busybox []byte) []Entry {
	es := []Entry{
		Dir("bin", 0o755),
		Dir("dev", 0o755),
		Dir("etc", 0o755),
		Dir("proc", 0o555),
		Dir("root", 0o700),
		Dir("run", 0o755),
		Dir("sys", 0o555),
		Dir("tmp", 0o1777),
		Dir("usr", 0o755),
		Dir("usr/bin", 0o755),
		Dir("usr/sbin", 0o755),
		Dir("var", 0o755),
		Dir("var/tmp", 0o1777),
		File("bin/busybox", busybox, 0o755),
	}
	for _, a := range BusyboxApplets() {
		es = append(es, Symlink("bin/"+a, "/bin/busybox"))
	}
	es = append(es,
		File("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644),
		File("etc/group", []byte("root:x:0:\nnobody:x:65534:\n"), 0o644),
		File("etc/os-release", []byte(OSRelease), 0o644),
	)
	return es
}

// Rootfs writes the busybox rootfs of BusyboxEntries into dir (created if
// missing), reading the static busybox from busyboxPath. Ownership is set to
// root only when running as root. Existing files are overwritten.
func Rootfs(dir, busyboxPath string) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("reading busybox: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating rootfs directory: %w", err)
	}
	entries := BusyboxEntries(bb)
	for _, e := range entries {
		if err := writeEntry(dir, e); err != nil {
			return fmt.Errorf("writing rootfs entry %q into %s: %w", e.Path, dir, err)
		}
	}
	// Directory times last, children first, since creating entries
	// changes their parent's mtime.
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Type == tar.TypeSymlink {
			continue
		}
		t := e.ModTime
		if t.IsZero() {
			t = time.Unix(DefaultModTimeUnix, 0)
		}
		if err := os.Chtimes(filepath.Join(dir, e.Path), t, t); err != nil {
			return fmt.Errorf("setting times of %q in %s: %w", e.Path, dir, err)
		}
	}
	return nil
}

// writeEntry creates one trusted entry below dir.
func writeEntry(dir string, e Entry) error {
	p := filepath.Join(dir, strings.TrimSuffix(e.Path, "/"))
	mode := fileMode(e.Mode)
	switch e.Type {
	case tar.TypeDir:
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg:
		if err := os.WriteFile(p, e.Content, 0o600); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Symlink(e.Linkname, p); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported type %q", e.Type)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p, e.UID, e.GID); err != nil {
			return err
		}
	}
	if e.Type != tar.TypeSymlink {
		// After chown, which clears setuid/setgid bits.
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

// fileMode converts tar mode bits to an os.FileMode.
func fileMode(m int64) os.FileMode {
	mode := os.FileMode(m) & os.ModePerm
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}
