package netinit

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// RenderResolvConf returns the resolver configuration for the name servers
// and search domains of a lease, or nil when the lease names no server
// (the file is then left as nspawn made it).
func RenderResolvConf(link string, servers []netip.Addr, search []string) []byte {
	if len(servers) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by man8s-init from the DHCPv4 lease on %s.\n", link)
	for i, s := range servers {
		if i == 3 { // MAXNS: resolvers read no more
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	var domains []string
	for _, d := range search {
		d = strings.TrimSuffix(strings.TrimSpace(d), ".")
		if d != "" && !strings.ContainsAny(d, " \t\n#;") {
			domains = append(domains, d)
		}
	}
	if len(domains) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(domains, " "))
	}
	return []byte(b.String())
}

// maxLinks bounds the symlinks followed when resolving resolv.conf.
const maxLinks = 40

// resolveInRoot follows the symlinks of the final component of name (an
// absolute path inside root) the way the machine would see them, with
// absolute targets taken relative to root and ".." never leaving it. It
// returns the path inside root that the machine reads; that file may not
// exist yet.
func resolveInRoot(root, name string) (string, error) {
	p := path.Clean("/" + name)
	for range maxLinks {
		fi, err := os.Lstat(filepath.Join(root, p))
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil
		}
		target, err := os.Readlink(filepath.Join(root, p))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			p = path.Clean(target)
		} else {
			p = path.Join("/", path.Dir(p), target) // Join cleans; "/.." is "/"
		}
	}
	return "", fmt.Errorf("%s: %w", name, syscall.ELOOP)
}

// WriteResolvConf writes content to the machine's resolver file name
// (inside root) and returns the path inside root that it wrote.
//
// A symlinked resolv.conf (an image's link to systemd-resolved's
// ../run/systemd/resolve/stub-resolv.conf, or a link that nspawn's
// ResolvConf= left) is followed inside the root and its target written,
// creating missing directories, so that the image's layout stays as it
// is. The file is replaced by renaming a temporary file over it; where
// that cannot work (nspawn's ResolvConf=bind-* mounts a file over it), it
// is rewritten in place.
func WriteResolvConf(root, name string, content []byte) (string, error) {
	p, err := resolveInRoot(root, name)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", name, err)
	}
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return p, fmt.Errorf("writing %s: %w", p, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(full), ".resolv.conf.man8s-*")
	if err == nil {
		_, err = tmp.Write(content)
		err = errors.Join(err, tmp.Chmod(0o644), tmp.Close())
		if err == nil {
			err = os.Rename(tmp.Name(), full)
		}
		if err == nil {
			return p, nil
		}
		os.Remove(tmp.Name())
	}
	// A mount point (EBUSY) or a read-only directory: rewrite in place.
	if werr := os.WriteFile(full, content, 0o644); werr != nil {
		return p, fmt.Errorf("writing %s: %w", p, errors.Join(err, werr))
	}
	return p, nil
}
