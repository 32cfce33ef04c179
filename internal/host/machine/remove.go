package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
)

// ErrNotFound is returned for a machine of which nothing exists.
var ErrNotFound = errors.New("no such machine")

// RemovePlan says what removing a machine deletes and what it leaves.
type RemovePlan struct {
	Paths Paths
	// Delete lists the paths to delete, Missing those already gone.
	Delete  []Entry
	Missing []Entry
	// Kept lists what stays on purpose: the config and storage dirs with
	// keepData,
	// volume dirs outside the machine's dirs, the target of a rootfs or
	// config dir that is a symlink.
	Kept []Entry
}

// PlanRemove works out what removing the machine with paths p deletes.
// Nothing is touched. It works on partial leftovers of a machine; when
// nothing of it exists the error wraps ErrNotFound. The volumes bound in
// the settings file that live outside the machine's config and storage dirs
// (custom volume dirs) are listed as kept.
func PlanRemove(p Paths, keepData bool) (*RemovePlan, error) {
	plan := &RemovePlan{Paths: p}
	for _, e := range p.Entries() {
		fi, err := os.Lstat(e.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			plan.Missing = append(plan.Missing, e)
			continue
		case err != nil:
			return nil, fmt.Errorf("checking %s %s: %w", e.What, e.Path, err)
		}
		// The config dir and the storage dir are the machine: its files,
		// secrets and data. Kept, 'mbctl machines rebuild' makes the
		// machine again from them.
		if keepData && (e.Path == p.StorageDir || e.Path == p.ConfigDir) {
			plan.Kept = append(plan.Kept, e)
			continue
		}
		plan.Delete = append(plan.Delete, e)
		// Deleting a symlink never touches what it points to; say so for
		// the dirs, where a user may have moved the data to another disk.
		if fi.Mode()&fs.ModeSymlink != 0 && (e.Path == p.Rootfs || e.Path == p.ConfigDir || e.Path == p.StorageDir) {
			if target, err := os.Readlink(e.Path); err == nil {
				plan.Kept = append(plan.Kept, Entry{What: e.What + " (only the link is deleted)", Path: target})
			}
		}
	}
	if _, err := os.Lstat(p.Previous); err == nil && len(plan.Delete)+len(plan.Kept) > 0 {
		plan.Delete = append(plan.Delete, Entry{What: "previous root file system (rollback point)", Path: p.Previous})
	}
	if _, err := os.Lstat(p.Snapshots); err == nil && len(plan.Delete)+len(plan.Kept) > 0 {
		if keepData {
			plan.Kept = append(plan.Kept, Entry{What: "snapshots", Path: p.Snapshots})
		} else {
			plan.Delete = append(plan.Delete, Entry{What: "snapshots", Path: p.Snapshots})
		}
	}
	if len(plan.Delete) == 0 && len(plan.Kept) == 0 {
		return nil, fmt.Errorf("machine %s: %w (nothing at %s, %s, %s, %s or %s)", p.Name, ErrNotFound,
			p.Rootfs, p.ConfigDir, p.StorageDir, p.SettingsLink, p.ImageLink)
	}
	for _, host := range customVolumes(p) {
		plan.Kept = append(plan.Kept, Entry{What: "custom volume dir", Path: host})
	}
	return plan, nil
}

// customVolumes returns the host dirs bound into the machine that are
// neither in its config dir nor in its storage dir.
func customVolumes(p Paths) []string {
	f, err := unitfile.ReadFile(p.Settings)
	if err != nil {
		return nil // no readable settings: nothing to report
	}
	var out []string
	for _, key := range []string{"Bind", "BindReadOnly"} {
		for _, v := range f.GetAll("Files", key) {
			host, _, err := ParseBind(v)
			if err != nil || host == "" || host == p.Env {
				continue
			}
			if !fsutil.Within(host, p.ConfigDir) && !fsutil.Within(host, p.StorageDir) {
				out = append(out, host)
			}
		}
	}
	return out
}

// Execute deletes the plan's paths with btrfs.RemoveAll (os.RemoveAll that
// also deletes btrfs subvolumes), which never follows a
// symlink: a symlink is deleted as a link. It goes on after a failure and
// reports all of them.
func (plan *RemovePlan) Execute() error {
	var errs []error
	for _, e := range plan.Delete {
		if err := btrfs.RemoveAll(e.Path); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s %s: %w", e.What, e.Path, err))
		}
	}
	return errors.Join(errs...)
}

// ParseBind splits an nspawn Bind= value "SRC[:DST[:OPTIONS]]" into the host
// path and the container path (DST defaults to SRC). "\:" escapes a colon
// and a leading "-" (ignore a missing source) is dropped; a leading "+"
// (source relative to the container) yields an empty host path.
func ParseBind(value string) (host, container string, err error) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '\\' && i+1 < len(value):
			i++
			cur.WriteByte(value[i])
		case c == ':':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	if len(parts) > 3 {
		return "", "", fmt.Errorf("bind %q: too many ':' (escape a colon in a path as \\:)", value)
	}
	host = parts[0]
	host = strings.TrimPrefix(host, "-")
	if strings.HasPrefix(host, "+") {
		host = ""
	}
	container = parts[0]
	if len(parts) > 1 && parts[1] != "" {
		container = parts[1]
	}
	if host != "" {
		host = filepath.Clean(host)
	}
	return host, container, nil
}
