package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/config"
	"golang.org/x/sys/unix"
)

// Published ports (issue 15): systemd-nspawn's Port= lines in [Network] of
// a machine's settings, which nspawn turns into DNAT rules on the host when
// the machine starts (and removes when it stops).

// portLine is one Port= line of a settings file: its value as written and
// what it means.
type portLine struct {
	value string
	port  nspawnport.Port
}

// portLines reads the Port= lines of f; lines nspawn would not take are
// returned as errors naming them.
func portLines(f *unitfile.File) ([]portLine, []error) {
	var out []portLine
	var errs []error
	for _, v := range f.GetAll("Network", "Port") {
		p, err := nspawnport.Parse(v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, portLine{value: v, port: p})
	}
	return out, errs
}

// PublishedPorts returns the ports machine p's settings publish, in the
// file's order; nil when the machine has no settings. A Port= line nspawn
// would not take is skipped (machines check names it).
func PublishedPorts(p Paths) ([]nspawnport.Port, error) {
	f, err := unitfile.ReadFile(p.Settings)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return portsOf(f), nil
}

// PublishResult says what Publish or Unpublish did to a machine's settings.
type PublishResult struct {
	Name string `json:"name"`
	// Settings is the file changed.
	Settings string `json:"settings"`
	// Added are the ports added; Present those published already (not
	// added again); Removed those unpublished.
	Added   []nspawnport.Port `json:"added"`
	Present []nspawnport.Port `json:"already_published"`
	Removed []nspawnport.Port `json:"removed"`
	// Ports are all the ports the machine publishes now.
	Ports []nspawnport.Port `json:"ports"`
}

// Changed reports whether the settings file was written.
func (r PublishResult) Changed() bool { return len(r.Added)+len(r.Removed) > 0 }

// openSettings reads machine p's settings for a publish edit and, with
// needNetwork, checks that its template has a network of its own.
func openSettings(p Paths, needNetwork bool) (*unitfile.File, fs.FileMode, error) {
	fi, err := os.Stat(p.Settings)
	if errors.Is(err, fs.ErrNotExist) {
		if existing, _ := p.Existing(); len(existing) == 0 {
			return nil, 0, fmt.Errorf("machine %s does not exist (see 'mbctl machines list'): %w", p.Name, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("machine %s has no settings file %s: rebuild its config dir or pull it again", p.Name, p.Settings)
	}
	if err != nil {
		return nil, 0, err
	}
	f, err := unitfile.ReadFile(p.Settings)
	if err != nil {
		return nil, 0, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	if env, err := envfile.ReadFile(p.Env); err == nil && needNetwork {
		tmpl, _ := env.Get(man8env.KeyTemplate)
		if err := nspawnport.CheckTemplate(tmpl); err != nil {
			return nil, 0, fmt.Errorf("machine %s: %w", p.Name, err)
		}
	}
	return f, fi.Mode().Perm(), nil
}

// CheckPortsFree checks that no machine other than name publishes one of
// ports' host ports (with the same protocol): the error names each machine
// and its line. Machines whose settings cannot be read are skipped.
func CheckPortsFree(dirs config.Paths, name string, ports []nspawnport.Port) error {
	if len(ports) == 0 {
		return nil
	}
	names, err := Names(dirs)
	if err != nil {
		return err
	}
	var errs []error
	for _, other := range names {
		if other == name {
			continue
		}
		theirs, err := PublishedPorts(PathsFor(dirs, other))
		if err != nil {
			continue
		}
		for _, want := range ports {
			if i := slices.IndexFunc(theirs, func(t nspawnport.Port) bool { return t.HostKey() == want.HostKey() }); i >= 0 {
				errs = append(errs, fmt.Errorf("host port %s is published by machine %s already (%s there): choose another host port, or 'mbctl machines unpublish %s %s' first",
					want.HostKey(), other, theirs[i], other, want.HostKey()))
			}
		}
	}
	return errors.Join(errs...)
}

// CheckPortList checks ports given together (machines pull --publish):
// one host port and protocol cannot go to two ports of the machine.
func CheckPortList(ports []nspawnport.Port) error {
	seen := map[string]nspawnport.Port{}
	for _, p := range ports {
		if q, ok := seen[p.HostKey()]; ok && q != p {
			return fmt.Errorf("host port %s is given twice, as %s and as %s: a host port goes to one port of the machine", p.HostKey(), q, p)
		}
		seen[p.HostKey()] = p
	}
	return nil
}

// Publish adds a Port= line to machine name's settings for each of ports
// that it does not publish yet, keeping the file's comments and order. A
// host port and protocol that the machine publishes to another port, or
// that another machine publishes, is an error, and nothing is written.
// nspawn reads the lines when the machine starts.
func Publish(dirs config.Paths, name string, ports []nspawnport.Port) (PublishResult, error) {
	p := PathsFor(dirs, name)
	res := PublishResult{Name: name, Settings: p.Settings, Added: []nspawnport.Port{}, Present: []nspawnport.Port{}, Removed: []nspawnport.Port{}}
	if err := CheckPortList(ports); err != nil {
		return res, err
	}
	unlock, err := LockPorts(dirs)
	if err != nil {
		return res, err
	}
	defer unlock()
	f, mode, err := openSettings(p, true)
	if err != nil {
		return res, err
	}
	have, _ := portLines(f)
	var add []nspawnport.Port
	var errs []error
	for _, want := range ports {
		i := slices.IndexFunc(have, func(l portLine) bool { return l.port.HostKey() == want.HostKey() })
		switch {
		case i >= 0 && have[i].port == want:
			if !slices.Contains(res.Present, want) {
				res.Present = append(res.Present, want)
			}
		case i >= 0:
			errs = append(errs, fmt.Errorf("machine %s publishes host port %s to port %d already (Port=%s): 'mbctl machines unpublish %s %s' first",
				name, want.HostKey(), have[i].port.Container, have[i].value, name, want.HostKey()))
		case !slices.Contains(add, want):
			add = append(add, want)
		}
	}
	if err := errors.Join(append(errs, CheckPortsFree(dirs, name, add))...); err != nil {
		return res, err
	}
	for _, port := range add {
		if err := f.Add("Network", "Port", port.Value()); err != nil {
			return res, fmt.Errorf("publishing %s on machine %s: %w", port, name, err)
		}
	}
	if len(add) > 0 {
		if err := unitfile.WriteFileAtomic(p.Settings, f, mode); err != nil {
			return res, fmt.Errorf("publishing ports of machine %s: %w", name, err)
		}
	}
	res.Added = append(res.Added, add...)
	res.Ports = portsOf(f)
	return res, nil
}

// PortMatch selects the Port= lines Unpublish removes: those of the host
// port and protocol of Port, and, if Exact, only when they go to
// Port.Container.
type PortMatch struct {
	Port  nspawnport.Port
	Exact bool
}

func (m PortMatch) String() string {
	if m.Exact {
		return m.Port.String()
	}
	return m.Port.HostKey()
}

// Unpublish removes the Port= lines that match, or with all every Port=
// line, keeping the rest of the file. A match that no line has is an
// error naming it, and nothing is removed.
func Unpublish(dirs config.Paths, name string, matches []PortMatch, all bool) (PublishResult, error) {
	p := PathsFor(dirs, name)
	res := PublishResult{Name: name, Settings: p.Settings, Added: []nspawnport.Port{}, Present: []nspawnport.Port{}, Removed: []nspawnport.Port{}}
	f, mode, err := openSettings(p, false)
	if err != nil {
		return res, err
	}
	have, _ := portLines(f)
	var drop []portLine
	var missing []string
	for _, m := range matches {
		found := false
		for _, l := range have {
			if l.port.HostKey() == m.Port.HostKey() && (!m.Exact || l.port.Container == m.Port.Container) {
				found = true
				if !slices.Contains(drop, l) {
					drop = append(drop, l)
				}
			}
		}
		if !found {
			missing = append(missing, m.String())
		}
	}
	if len(missing) > 0 {
		var published []string
		for _, l := range have {
			published = append(published, l.port.String())
		}
		list := "none"
		if len(published) > 0 {
			list = strings.Join(published, ", ")
		}
		return res, fmt.Errorf("machine %s does not publish %s (it publishes: %s); nothing was removed", name, strings.Join(missing, ", "), list)
	}
	if all {
		drop = have
	}
	for _, l := range drop {
		if f.UnsetValue("Network", "Port", l.value) > 0 {
			res.Removed = append(res.Removed, l.port)
		}
	}
	if len(res.Removed) > 0 {
		if err := unitfile.WriteFileAtomic(p.Settings, f, mode); err != nil {
			return res, fmt.Errorf("unpublishing ports of machine %s: %w", name, err)
		}
	}
	res.Ports = portsOf(f)
	return res, nil
}

func portsOf(f *unitfile.File) []nspawnport.Port {
	lines, _ := portLines(f)
	out := make([]nspawnport.Port, len(lines))
	for i, l := range lines {
		out[i] = l.port
	}
	return out
}

// portsLock, in the scratch dir (paths.scratch, beside the run journals,
// not among the machines' config dirs), is flock'ed by each Publish from
// its look at the other machines' ports to its write, and by a pull with
// ports from its last look to the move of its config dir into place, so
// that two of them at once cannot both take one host port.
const portsLock = "publish.lock"

// LockPorts takes the host's publish lock, waiting for another holder to
// finish (each holds it for milliseconds).
func LockPorts(dirs config.Paths) (func(), error) {
	if dirs.Scratch == "" {
		return nil, errors.New("publish lock: paths.scratch is not set")
	}
	if err := os.MkdirAll(dirs.Scratch, 0o755); err != nil {
		return nil, fmt.Errorf("publish lock: %w", err)
	}
	path := filepath.Join(dirs.Scratch, portsLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("publish lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("publish lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
