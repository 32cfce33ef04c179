// Package unit writes the systemd drop-ins mbctl adds to a machine's
// service, systemd-nspawn@NAME.service: the start order and needs between
// machines (machines depend) and the restart policy (machines pull|set
// --restart). Each is a file of its own in the unit's drop-in dir
// (DIR/systemd-nspawn@NAME.service.d/), named 50-mbctl-*.conf, so that
// mbctl finds, changes and removes exactly what it wrote and nothing a
// user added beside it. The caller runs DaemonReload afterwards.
package unit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/fsutil"
	"github.com/man8s/mbctl/internal/host/machine"
)

// Kinds of dependency.
const (
	// Requires: A starts after B and only with it (After= + Requires=):
	// A's start fails when B's does, and stopping B stops A.
	Requires = "requires"
	// Wants: A starts after B when both start, but not without B's
	// start succeeding (After= + Wants=).
	Wants = "wants"
)

// Restart policies (the unit's Restart=).
var RestartPolicies = []string{"no", "on-failure", "always"}

const (
	dependPrefix = "50-mbctl-depend-"
	restartFile  = "50-mbctl-restart.conf"
)

// DropInDir is the drop-in dir of machine name's service under dir.
func DropInDir(dir, name string) string { return filepath.Join(dir, machine.Unit(name)+".d") }

// DependPath is the drop-in that makes machine a depend on machine b.
func DependPath(dir, a, b string) string {
	return filepath.Join(DropInDir(dir, a), dependPrefix+b+".conf")
}

// RestartPath is the drop-in holding machine name's restart policy.
func RestartPath(dir, name string) string { return filepath.Join(DropInDir(dir, name), restartFile) }

// Dependency is one machine depending on another.
type Dependency struct {
	Machine string `json:"machine"`
	On      string `json:"on"`
	// Kind is Requires or Wants.
	Kind string `json:"kind"`
	// Path is the drop-in.
	Path string `json:"path"`
}

// DependContent is the drop-in for a depending on b.
func DependContent(a, b, kind string) string {
	need := "Requires"
	if kind == Wants {
		need = "Wants"
	}
	flag := ""
	if kind == Wants {
		flag = " --wants"
	}
	return fmt.Sprintf(`# Written by mbctl: machines depend %s --on %s%s.
# Remove with 'mbctl machines depend %s --on %s --remove'.
[Unit]
After=%s
%s=%s
`, a, b, flag, a, b, machine.Unit(b), need, machine.Unit(b))
}

// RestartContent is the drop-in for restart policy.
func RestartContent(name, policy string) string {
	return fmt.Sprintf(`# Written by mbctl: machines set %s --restart %s (or pull --restart).
[Service]
Restart=%s
`, name, policy, policy)
}

// ValidateRestart checks a restart policy.
func ValidateRestart(policy string) error {
	if slices.Contains(RestartPolicies, policy) {
		return nil
	}
	return fmt.Errorf("restart policy %q: want %s", policy, strings.Join(RestartPolicies, ", "))
}

// write puts content at path unless it is there already; it reports
// whether it changed anything.
func write(path, content string) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == content {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("creating the drop-in dir %s: %w (is paths.systemd_units right?)", filepath.Dir(path), err)
	}
	if err := fsutil.WriteFileAtomic(path, []byte(content), 0o644); err != nil {
		return false, fmt.Errorf("writing drop-in %s: %w", path, err)
	}
	return true, nil
}

// remove deletes path and then its dir when that is empty; a missing file
// is not an error. It reports whether it removed the file.
func remove(path string) (bool, error) {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("removing drop-in %s: %w", path, err)
	}
	_ = os.Remove(filepath.Dir(path)) // only when empty: a user's own drop-ins stay
	return true, nil
}

// Depend makes machine a depend on b (kind Requires or Wants). It refuses
// a dependency on itself and one that would close a cycle.
func Depend(dir, a, b, kind string) (Dependency, bool, error) {
	d := Dependency{Machine: a, On: b, Kind: kind, Path: DependPath(dir, a, b)}
	if kind != Requires && kind != Wants {
		return d, false, fmt.Errorf("dependency kind %q: want %s or %s", kind, Requires, Wants)
	}
	if a == b {
		return d, false, fmt.Errorf("machine %s cannot depend on itself", a)
	}
	if path, err := chain(dir, b, a); err != nil {
		return d, false, err
	} else if path != nil {
		return d, false, fmt.Errorf("machine %s already depends on %s (%s): %s on %s would make a cycle, which systemd breaks by dropping a start", b, a, strings.Join(path, " -> "), a, b)
	}
	changed, err := write(d.Path, DependContent(a, b, kind))
	return d, changed, err
}

// Undepend removes what Depend wrote; false when there was nothing.
func Undepend(dir, a, b string) (Dependency, bool, error) {
	d := Dependency{Machine: a, On: b, Path: DependPath(dir, a, b)}
	removed, err := remove(d.Path)
	return d, removed, err
}

// chain returns the path of dependencies from a to b (nil: none).
func chain(dir, from, to string) ([]string, error) {
	seen := map[string]bool{}
	var walk func(n string) ([]string, error)
	walk = func(n string) ([]string, error) {
		if n == to {
			return []string{n}, nil
		}
		if seen[n] {
			return nil, nil
		}
		seen[n] = true
		deps, err := DependsOn(dir, n)
		if err != nil {
			return nil, err
		}
		for _, d := range deps {
			if p, err := walk(d.On); err != nil || p != nil {
				return append([]string{n}, p...), err
			}
		}
		return nil, nil
	}
	return walk(from)
}

// DependsOn lists what machine name depends on, sorted.
func DependsOn(dir, name string) ([]Dependency, error) {
	ents, err := os.ReadDir(DropInDir(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the drop-ins of %s: %w", machine.Unit(name), err)
	}
	var out []Dependency
	for _, e := range ents {
		on, ok := strings.CutPrefix(e.Name(), dependPrefix)
		on, ok2 := strings.CutSuffix(on, ".conf")
		if !ok || !ok2 || machine.ValidateName(on) != nil {
			continue
		}
		path := filepath.Join(DropInDir(dir, name), e.Name())
		kind, err := readKind(path)
		if err != nil {
			return nil, err
		}
		out = append(out, Dependency{Machine: name, On: on, Kind: kind, Path: path})
	}
	return out, nil
}

// readKind says whether the drop-in at path holds Requires= or Wants=
// (a user may have edited it).
func readKind(path string) (string, error) {
	f, err := unitfile.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading drop-in %s: %w", path, err)
	}
	if len(f.GetAll("Unit", "Requires")) > 0 {
		return Requires, nil
	}
	return Wants, nil
}

// Dependants lists the machines that depend on name, sorted.
func Dependants(dir, name string) ([]Dependency, error) {
	dirs, err := filepath.Glob(filepath.Join(dir, "systemd-nspawn@*.service.d"))
	if err != nil {
		return nil, err
	}
	var out []Dependency
	for _, d := range dirs {
		m := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(d), "systemd-nspawn@"), ".service.d")
		path := filepath.Join(d, dependPrefix+name+".conf")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		kind, err := readKind(path)
		if err != nil {
			return nil, err
		}
		out = append(out, Dependency{Machine: m, On: name, Kind: kind, Path: path})
	}
	return out, nil
}

// SetRestart writes machine name's restart policy.
func SetRestart(dir, name, policy string) (string, bool, error) {
	path := RestartPath(dir, name)
	if err := ValidateRestart(policy); err != nil {
		return path, false, err
	}
	changed, err := write(path, RestartContent(name, policy))
	return path, changed, err
}

// Restart returns machine name's restart policy from its drop-in ("" when
// mbctl wrote none: systemd-nspawn@.service's own, which is no).
func Restart(dir, name string) (string, error) {
	path := RestartPath(dir, name)
	f, err := unitfile.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading drop-in %s: %w", path, err)
	}
	v, _ := f.Get("Service", "Restart")
	return v, nil
}

// RemoveAll deletes every drop-in mbctl wrote for machine name (its
// dependencies and its restart policy) and returns their paths; drop-ins
// of other machines that depend on it stay (see Dependants).
func RemoveAll(dir, name string) ([]string, error) {
	ents, err := os.ReadDir(DropInDir(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the drop-ins of %s: %w", machine.Unit(name), err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "50-mbctl-") || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		path := filepath.Join(DropInDir(dir, name), e.Name())
		if ok, err := remove(path); err != nil {
			errs = append(errs, err)
		} else if ok {
			removed = append(removed, path)
		}
	}
	return removed, errors.Join(errs...)
}

// DaemonReload is the command that makes systemd read changed drop-ins.
func DaemonReload() []string { return []string{"systemctl", "daemon-reload"} }
