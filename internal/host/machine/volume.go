package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/fsutil"
)

// VolumeKind says where a volume's host dir lives.
type VolumeKind string

// The answers to "where should this volume live?".
const (
	// VolumeConfig keeps the volume in the config dir:
	// <configs>/NAME/<volume path>. Settings-like content, rebuilt with
	// the machine.
	VolumeConfig VolumeKind = "config"
	// VolumeData keeps it in the storage dir: <storage>/NAME/<volume path>.
	VolumeData VolumeKind = "data"
	// VolumeCustom keeps it in a host dir the user names.
	VolumeCustom VolumeKind = "custom"
	// VolumeSkip does not mount it: the content stays in the rootfs.
	VolumeSkip VolumeKind = "skip"
)

// Volume is one of a machine's volumes and where it lives on the host.
type Volume struct {
	// Path is the absolute, clean path in the machine.
	Path string     `json:"path"`
	Kind VolumeKind `json:"kind"`
	// Host is the host dir (for every kind but skip).
	Host string `json:"host,omitempty"`
}

// CleanVolumePath checks a volume path from an image or the command line
// and returns it clean: absolute, no "..", not "/".
func CleanVolumePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("volume %q: not an absolute path", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("volume %q: the whole root file system cannot be a volume", p)
	}
	if strings.ContainsAny(c, "\n\x00") {
		return "", fmt.Errorf("volume %q: newline or NUL in the path", p)
	}
	for _, part := range strings.Split(c[1:], "/") {
		if part == ".." {
			return "", fmt.Errorf("volume %q: \"..\" in the path", p)
		}
	}
	return c, nil
}

// ParseVolumeFlag parses a --volume value "PATH=config|data|skip|/abs/dir".
func ParseVolumeFlag(s string) (Volume, error) {
	p, answer, ok := strings.Cut(s, "=")
	if !ok || answer == "" {
		return Volume{}, fmt.Errorf("--volume %q: want PATH=config, PATH=data, PATH=skip or PATH=/host/dir", s)
	}
	clean, err := CleanVolumePath(p)
	if err != nil {
		return Volume{}, fmt.Errorf("--volume %q: %w", s, err)
	}
	v := Volume{Path: clean}
	switch answer {
	case string(VolumeConfig), string(VolumeData), string(VolumeSkip):
		v.Kind = VolumeKind(answer)
	default:
		if !strings.HasPrefix(answer, "/") {
			return Volume{}, fmt.Errorf("--volume %q: %q is not config, data, skip or an absolute host path", s, answer)
		}
		v.Kind, v.Host = VolumeCustom, filepath.Clean(answer)
	}
	return v, nil
}

// Place fills in v.Host for the config and data kinds of machine p.
func (v Volume) Place(p Paths) Volume {
	switch v.Kind {
	case VolumeConfig:
		v.Host = filepath.Join(p.ConfigDir, v.Path)
	case VolumeData:
		v.Host = filepath.Join(p.StorageDir, v.Path)
	case VolumeSkip:
		v.Host = ""
	}
	return v
}

// CheckCustomDir checks a custom volume dir for machine p: absolute, not
// existing yet, not inside a dir that mbctl manages for this machine, and
// no colon (nspawn's Bind= separator) or newline in it.
func CheckCustomDir(dir string, p Paths) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%q is not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if strings.ContainsAny(dir, ":\n\x00") {
		return fmt.Errorf("%q: a volume dir cannot contain ':' or a newline", dir)
	}
	for _, e := range p.Entries() {
		if fsutil.Within(dir, e.Path) || fsutil.Within(e.Path, dir) {
			return fmt.Errorf("%s overlaps the machine's %s %s", dir, e.What, e.Path)
		}
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%s already exists: name a new dir (its content comes from the image)", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
