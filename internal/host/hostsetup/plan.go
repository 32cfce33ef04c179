package hostsetup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/fsutil"
)

// Options say what to set up and where.
type Options struct {
	// Bridge is the machines' bridge name (network.bridge).
	Bridge string
	// Subnet is this host's Yggdrasil subnet; the bridge gets <subnet>::1.
	Subnet netip.Prefix
	// IPv4 is the bridge's IPv4 address and the machines' subnet
	// (network.ipv4); zero: the shipped one.
	IPv4 netip.Prefix
	// NetworkDir receives the .netdev and .network (paths.networkd).
	NetworkDir string
	// SysctlDir receives the sysctl drop-in (paths.sysctl).
	SysctlDir string
	// ProcSys is where the running sysctls are read and written.
	// Default /proc/sys.
	ProcSys string
	// NoIPv6Uplink: the host has no IPv6 to the internet, and the bridge's
	// router advertisements offer no default route (NoDefaultRouter).
	NoIPv6Uplink bool
}

// Action is what happens to one file or sysctl.
type Action int

const (
	// Unchanged: the file or value is already what setup would write.
	Unchanged Action = iota
	// Create: the file does not exist yet.
	Create
	// Update: the file or value exists and differs.
	Update
)

func (a Action) String() string {
	switch a {
	case Create:
		return "create"
	case Update:
		return "update"
	}
	return "unchanged"
}

// FileChange is one file of the plan.
type FileChange struct {
	Path   string
	Kind   Kind
	Action Action
	// Old is the current content (nil when Action is Create); New what
	// setup writes.
	Old, New []byte
}

// SysctlChange is one running kernel setting of the plan.
type SysctlChange struct {
	Key    string
	Path   string
	Action Action
	Old    string
	New    string
}

// Plan is what Apply would do on this host.
type Plan struct {
	Files   []FileChange
	Sysctls []SysctlChange
}

// Changed reports whether applying the plan changes anything.
func (p *Plan) Changed() bool {
	return p.NetworkdChanged() || p.changedKind(SysctlFile) || p.sysctlsChanged()
}

// NetworkdChanged reports whether a systemd-networkd file changes, which
// calls for a reload of networkd.
func (p *Plan) NetworkdChanged() bool { return p.changedKind(NetworkdFile) }

func (p *Plan) changedKind(k Kind) bool {
	for _, f := range p.Files {
		if f.Kind == k && f.Action != Unchanged {
			return true
		}
	}
	return false
}

func (p *Plan) sysctlsChanged() bool {
	for _, s := range p.Sysctls {
		if s.Action != Unchanged {
			return true
		}
	}
	return false
}

// MakePlan renders the files for opts and compares them, and the running
// sysctls, with what the host has now. It changes nothing.
func MakePlan(opts Options) (*Plan, error) {
	if opts.ProcSys == "" {
		opts.ProcSys = "/proc/sys"
	}
	for _, d := range []struct{ key, dir string }{{"paths.networkd", opts.NetworkDir}, {"paths.sysctl", opts.SysctlDir}} {
		if !filepath.IsAbs(d.dir) {
			return nil, fmt.Errorf("%s %q is not an absolute path", d.key, d.dir)
		}
	}
	files, err := RenderFor(Bridge{Name: opts.Bridge, IPv4: opts.IPv4, Subnet: opts.Subnet, IPv6Uplink: !opts.NoIPv6Uplink})
	if err != nil {
		return nil, err
	}
	plan := &Plan{}
	for _, f := range files {
		dir := opts.NetworkDir
		if f.Kind == SysctlFile {
			dir = opts.SysctlDir
		}
		fc := FileChange{Path: filepath.Join(dir, f.Name), Kind: f.Kind, New: f.Content}
		old, err := os.ReadFile(fc.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fc.Action = Create
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", fc.Path, err)
		case bytes.Equal(old, f.Content):
			fc.Old, fc.Action = old, Unchanged
		default:
			fc.Old, fc.Action = old, Update
		}
		plan.Files = append(plan.Files, fc)
		if f.Kind != SysctlFile {
			continue
		}
		kv, err := Sysctls(f.Content)
		if err != nil {
			return nil, fmt.Errorf("rendered %s: %w", f.Name, err)
		}
		for _, e := range kv {
			sc := SysctlChange{Key: e[0], Path: sysctlPath(opts.ProcSys, e[0]), New: e[1]}
			cur, err := os.ReadFile(sc.Path)
			if err != nil {
				return nil, fmt.Errorf("reading sysctl %s: %w", sc.Key, err)
			}
			sc.Old = strings.TrimSpace(string(cur))
			if sc.Old != sc.New {
				sc.Action = Update
			}
			plan.Sysctls = append(plan.Sysctls, sc)
		}
	}
	return plan, nil
}

// Networkd is the running systemd-networkd, if any.
type Networkd struct {
	// Running reports whether networkd runs for this host's network
	// namespace. Nil means it does not.
	Running func(ctx context.Context) (bool, error)
	// Reload makes networkd read its files again (networkctl reload).
	Reload func(ctx context.Context) error
}

// Result says what Apply did.
type Result struct {
	// Written are the files created or updated.
	Written []string
	// Set are the sysctl keys whose running value was changed.
	Set []string
	// Reloaded is true when networkd was reloaded.
	Reloaded bool
	// NetworkdStopped is true when networkd files changed but networkd does
	// not run: the bridge appears when it is started.
	NetworkdStopped bool
}

// Apply carries out plan: it writes the changed files atomically (creating
// their directories), sets the changed sysctls and, if a networkd file
// changed and networkd runs, reloads it. With reload false networkd is left
// alone. It stops at the first error; what was done so far is in Result.
func Apply(ctx context.Context, plan *Plan, nd Networkd, reload bool) (Result, error) {
	var res Result
	for _, f := range plan.Files {
		if f.Action == Unchanged {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return res, fmt.Errorf("creating %s: %w", filepath.Dir(f.Path), err)
		}
		if err := fsutil.WriteFileAtomic(f.Path, f.New, 0o644); err != nil {
			return res, fmt.Errorf("writing %s: %w", f.Path, err)
		}
		res.Written = append(res.Written, f.Path)
	}
	for _, s := range plan.Sysctls {
		if s.Action == Unchanged {
			continue
		}
		if err := os.WriteFile(s.Path, []byte(s.New+"\n"), 0); err != nil {
			return res, fmt.Errorf("setting sysctl %s = %s (%s): %w", s.Key, s.New, s.Path, err)
		}
		res.Set = append(res.Set, s.Key)
	}
	if !plan.NetworkdChanged() || !reload {
		return res, nil
	}
	running := false
	if nd.Running != nil {
		var err error
		if running, err = nd.Running(ctx); err != nil {
			return res, fmt.Errorf("finding out whether systemd-networkd runs: %w", err)
		}
	}
	if !running {
		res.NetworkdStopped = true
		return res, nil
	}
	if nd.Reload == nil {
		return res, errors.New("no way to reload systemd-networkd given")
	}
	if err := nd.Reload(ctx); err != nil {
		return res, fmt.Errorf("reloading systemd-networkd (the files are written; run `networkctl reload` or restart systemd-networkd): %w", err)
	}
	res.Reloaded = true
	return res, nil
}
