package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// paxXattrPrefix marks the PAX records that carry extended attributes.
const paxXattrPrefix = "SCHILY.xattr."

// hasXattrs reports whether hdr carries extended attributes.
func hasXattrs(hdr *tar.Header) bool {
	for key := range hdr.PAXRecords {
		if strings.HasPrefix(key, paxXattrPrefix) {
			return true
		}
	}
	return false
}

// xattrSkipReason says why the extended attribute attr is not restored,
// or "" if it is.
func xattrSkipReason(attr string) string {
	switch {
	case attr == "security.selinux":
		return "SELinux labels belong to the host's policy"
	case attr == "system.nfs4_acl":
		return "NFSv4 ACLs belong to the host"
	case strings.HasPrefix(attr, "trusted.overlay."):
		return "overlayfs attributes would change how overlayfs reads the root"
	case strings.HasPrefix(attr, "user."),
		strings.HasPrefix(attr, "trusted."),
		strings.HasPrefix(attr, "security."),
		attr == "system.posix_acl_access",
		attr == "system.posix_acl_default":
		return ""
	}
	return "unsupported namespace"
}

// setXattrs restores the extended attributes of hdr, on the open file fd,
// or if fd is -1 on procPath without following its final component.
// Attributes that are skipped on purpose, or that the file system or the
// file type does not support, are logged once per kind.
func (u *Unpacker) setXattrs(hdr *tar.Header, fd int, procPath string) error {
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok {
			continue
		}
		if reason := xattrSkipReason(attr); reason != "" {
			ns, _, _ := strings.Cut(attr, ".")
			u.warnOnce("skip:"+reason+":"+ns, "skipping extended attribute", "attr", attr, "entry", shorten(hdr.Name), "reason", reason)
			continue
		}
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, attr, []byte(value), 0)
		} else {
			err = unix.Lsetxattr(procPath, attr, []byte(value), 0)
		}
		ns, _, _ := strings.Cut(attr, ".")
		switch {
		case err == nil:
			if attr == "system.posix_acl_default" {
				// New entries below this directory get their mode from
				// the ACL, not the umask: no more creating them with
				// their final mode (see bornExact).
				u.fastMeta = false
			}
		case errors.Is(err, unix.EOPNOTSUPP):
			u.warnOnce("enotsup:"+ns, "the file system does not support these extended attributes; skipping them",
				"namespace", ns, "attr", attr, "entry", shorten(hdr.Name))
		case errors.Is(err, unix.EPERM) && fd < 0 && ns == "user":
			// user.* is only allowed on regular files and directories.
			u.warnOnce("eperm-special:"+ns, "skipping user extended attributes on symbolic links and special files",
				"attr", attr, "entry", shorten(hdr.Name))
		default:
			return fmt.Errorf("setting extended attribute %q: %w", attr, err)
		}
	}
	return nil
}
