package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/host/config"
)

// File names inside a machine's config dir.
const (
	SettingsFile = "container.nspawn"
	EnvFile      = "man8env.env"
	// ResolvFile is a strict machine's /etc/resolv.conf (its root is
	// read-only), which man8s-init writes from the DHCP lease.
	ResolvFile = "resolv.conf"
)

// Paths are the host paths that make up machine Name (DESIGN.md "Host
// layout"). Every one of them is derived from the configuration.
type Paths struct {
	Name string `json:"name"`
	// Rootfs is the machine's root file system.
	Rootfs string `json:"rootfs"`
	// ConfigDir holds Settings, Env and the config volumes.
	ConfigDir string `json:"config_dir"`
	// Settings is the real nspawn settings file; Env the app's environment.
	Settings string `json:"settings"`
	Env      string `json:"env"`
	// StorageDir holds the data volumes.
	StorageDir string `json:"storage_dir"`
	// SettingsLink is what systemd-nspawn reads: a symlink to Settings.
	SettingsLink string `json:"settings_link"`
	// ImageLink is machinectl's image: a symlink to Rootfs.
	ImageLink string `json:"image_link"`
	// Previous is the rootfs before the last upgrade, kept for a
	// rollback (absent until an upgrade).
	Previous string `json:"previous_rootfs"`
	// Snapshots holds the machine's btrfs snapshots, one dir per label
	// (absent until 'machines snapshot').
	Snapshots string `json:"snapshots"`
}

// PathsFor returns machine name's paths under the configured directories.
// The name must be valid (ValidateName).
func PathsFor(dirs config.Paths, name string) Paths {
	conf := filepath.Join(dirs.Configs, name)
	return Paths{
		Name:         name,
		Rootfs:       filepath.Join(dirs.Machines, name),
		ConfigDir:    conf,
		Settings:     filepath.Join(conf, SettingsFile),
		Env:          filepath.Join(conf, EnvFile),
		StorageDir:   filepath.Join(dirs.Storage, name),
		SettingsLink: filepath.Join(dirs.Nspawn, name+".nspawn"),
		ImageLink:    filepath.Join(dirs.Machinectl, name),
		Previous:     filepath.Join(dirs.Machines, "."+name+".mbctl-previous"),
		Snapshots:    filepath.Join(dirs.Machines, ".snapshots", name),
	}
}

// Entry is one of a machine's top-level paths with what it is called.
type Entry struct {
	What string
	Path string
}

// Entries lists the top-level paths a machine owns, in the order they are
// created: rootfs, config dir, storage dir, settings link, image link.
func (p Paths) Entries() []Entry {
	return []Entry{
		{"root file system", p.Rootfs},
		{"config dir", p.ConfigDir},
		{"storage dir", p.StorageDir},
		{"nspawn settings link", p.SettingsLink},
		{"machinectl image link", p.ImageLink},
	}
}

// Existing returns the entries of p that exist (as anything, a dangling
// symlink included).
func (p Paths) Existing() ([]Entry, error) {
	var found []Entry
	for _, e := range p.Entries() {
		_, err := os.Lstat(e.Path)
		switch {
		case err == nil:
			found = append(found, e)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("checking %s %s: %w", e.What, e.Path, err)
		}
	}
	return found, nil
}

// ExistsError reports that a machine cannot be created because some of its
// paths are already there.
type ExistsError struct {
	Name  string
	Found []Entry
}

func (e *ExistsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine %s cannot be created: ", e.Name)
	for i, f := range e.Found {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "its %s %s", f.What, f.Path)
	}
	if len(e.Found) == 1 {
		b.WriteString(" already exists")
	} else {
		b.WriteString(" already exist")
	}
	kept := true // only what remove --keep-data keeps
	for _, f := range e.Found {
		if f.What != "config dir" && f.What != "storage dir" {
			kept = false
		}
	}
	if kept {
		fmt.Fprintf(&b, ": kept data of an earlier machine %s? Pass --adopt to use them as they are (or 'mbctl machines rebuild %s' to make it again from its config dir); else remove them with 'mbctl machines remove %s'", e.Name, e.Name, e.Name)
		return b.String()
	}
	fmt.Fprintf(&b, " (remove the machine with 'mbctl machines remove %s', or move them away)", e.Name)
	return b.String()
}

// CheckFree returns an *ExistsError naming every path of p that exists.
func (p Paths) CheckFree() error {
	found, err := p.Existing()
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return &ExistsError{Name: p.Name, Found: found}
	}
	return nil
}
