package machine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/host/config"
)

// Info describes a machine as its files say.
type Info struct {
	Name       string    `json:"name"`
	State      State     `json:"state"`
	Image      string    `json:"image,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	YggAddress string    `json:"ygg_address,omitempty"`
	Template   string    `json:"template,omitempty"`
	InitMode   string    `json:"init_mode,omitempty"`
	Created    time.Time `json:"created,omitzero"`
	Paths      Paths     `json:"paths"`
	// Health is what man8s-init says of a running machine's app (see
	// Prober.Health); nil when stopped or not published.
	Health *man8env.Health `json:"health,omitempty"`
	// Ports says how a running machine's exposed ports are reached on
	// its Yggdrasil address (see Prober.Reachability); nil when stopped
	// or not published.
	Ports *man8env.Reachability `json:"ports,omitempty"`
	// Published are the ports the settings publish on the host (Port=,
	// see Publish), applied by nspawn at the machine's start.
	Published []nspawnport.Port `json:"published_ports"`
	// Missing names the machine's paths that do not exist (a partial
	// machine, e.g. after a crash or a manual deletion).
	Missing []string `json:"missing,omitempty"`
}

// Describe reads machine p's files. A missing env file leaves the fields
// it would fill empty; other read errors are returned.
func Describe(p Paths, st State) (Info, error) {
	in, _, err := DescribeEnv(p, st)
	return in, err
}

// DescribeEnv is Describe that also returns the content of the machine's
// env file (nil when it is missing), read once for both.
func DescribeEnv(p Paths, st State) (Info, []byte, error) {
	in := Info{Name: p.Name, State: st, Paths: p}
	for _, e := range p.Entries() {
		if _, err := os.Lstat(e.Path); errors.Is(err, fs.ErrNotExist) {
			in.Missing = append(in.Missing, e.What)
		}
	}
	in.Published, _ = PublishedPorts(p) // an unreadable file: machines check says why
	if in.Published == nil {
		in.Published = []nspawnport.Port{}
	}
	data, err := os.ReadFile(p.Env)
	if errors.Is(err, fs.ErrNotExist) {
		return in, nil, nil
	}
	if err != nil {
		return in, nil, fmt.Errorf("machine %s: reading env file: %w", p.Name, err)
	}
	env, err := envfile.Parse(bytes.NewReader(data))
	if err != nil {
		return in, nil, fmt.Errorf("machine %s: %w", p.Name, err)
	}
	get := func(k string) string { v, _ := env.Get(k); return v }
	in.Image, in.Digest = get(man8env.KeyImageURL), get(man8env.KeyDigest)
	in.YggAddress, in.Template, in.InitMode = get(man8env.KeyYggAddress), get(man8env.KeyTemplate), get(man8env.KeyInitMode)
	if t, err := time.Parse(time.RFC3339, get(man8env.KeyCreatedAt)); err == nil {
		in.Created = t
	}
	return in, data, nil
}

// Names returns the machines found under dirs: every directory in the
// machines dir and every config dir, valid names only, sorted.
func Names(dirs config.Paths) ([]string, error) {
	seen := map[string]bool{}
	for _, d := range []string{dirs.Machines, dirs.Configs} {
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing machines in %s: %w", d, err)
		}
		for _, e := range ents {
			if ValidateName(e.Name()) == nil && (e.IsDir() || e.Type()&fs.ModeSymlink != 0) {
				seen[e.Name()] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// Incomplete reports whether some of the machine's paths are missing: a
// pull of an older mbctl that was killed, or a manual deletion.
func (in Info) Incomplete() bool { return len(in.Missing) > 0 }

// Fix says how to repair an incomplete machine ("" when it is complete).
func (in Info) Fix() string {
	if !in.Incomplete() {
		return ""
	}
	if slices.Contains(in.Missing, "root file system") && !slices.Contains(in.Missing, "config dir") {
		return fmt.Sprintf("its root file system is gone: 'mbctl machines rebuild %s' makes it again from its config dir", in.Name)
	}
	return fmt.Sprintf("run 'mbctl host clean' (it takes back what a killed pull left), then 'mbctl machines remove %s' for what remains", in.Name)
}
