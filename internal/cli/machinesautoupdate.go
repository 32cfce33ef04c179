package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/probe"
)

// MachinesAutoUpdateOptions are the inputs of `machines auto-update`.
type MachinesAutoUpdateOptions struct {
	MachineDeps
	Commands commands
	// Getenv and Ask are handed to each machine's upgrade.
	Getenv func(string) string
	Ask    askFunc

	DryRun bool
	JSON   bool
	// Timeout is how long a restarted machine has to come up (default
	// 30 s).
	Timeout time.Duration
	// Settle is how long it must then keep running to count as up
	// (default 5 s); Poll how often its state is probed meanwhile
	// (default 250 ms).
	Settle, Poll time.Duration

	// Resolve returns the digest that ref names now (default: asks the
	// registry).
	Resolve func(ctx context.Context, cfg config.Config, ref string) (string, error)
	// Upgrade upgrades one machine without restarting it (default:
	// upgradeMachine, as `machines upgrade` does).
	Upgrade func(ctx context.Context, o *MachinesUpgradeOptions) (*upgraded, error)
	// Rollback takes a machine that did not come up back to its version
	// before the upgrade (default: provision.Rollback).
	Rollback func(dirs config.Paths, name string, log *slog.Logger) (*provision.RolledBack, error)
}

// Defaults of the options that have no flag.
const (
	autoUpdateTimeout = 30 * time.Second
	autoUpdateSettle  = 5 * time.Second
	autoUpdatePoll    = 250 * time.Millisecond
)

// NewCmdMachinesAutoUpdate builds `machines auto-update`; runF, if not
// nil, replaces machinesAutoUpdateRun (tests).
func NewCmdMachinesAutoUpdate(f *Factory, runF func(context.Context, *MachinesAutoUpdateOptions) error) *cobra.Command {
	opts := &MachinesAutoUpdateOptions{MachineDeps: newMachineDeps(f), Commands: f.commands(), Getenv: f.Getenv, Ask: f.prompter().ask}
	cmd := &cobra.Command{
		Use:   "auto-update",
		Short: "Upgrade every machine that opts in and whose image moved; roll back any that does not come up",
		Long: `Upgrade every machine whose man8env.env opts in with
MAN8S_AUTO_UPDATE=registry (as podman's AutoUpdate=registry) and whose
image reference (MAN8S_OCI_IMAGE_URL) now names another digest in the
registry, as 'mbctl machines upgrade NAME --yes' does: your edits to the
machine's files stay, new volumes become data volumes.

A running machine is restarted on the new image and must come up within
--timeout and then keep running for 5 seconds; if it exits or never comes
up, it is rolled back ('mbctl machines rollback') and restarted on its old
version. A stopped machine is upgraded and stays stopped. A machine that
runs in the foreground ('mbctl machines run', hosts without systemd) is
skipped.

One machine's failure does not stop the others. A table (or --json) says
what happened to each; the exit status is 1 if any failed or was rolled
back. --dry-run asks the registries and says which machines would be
upgraded, changing nothing.

The systemd units mbctl-auto-update.service and .timer run this daily
('systemctl enable --now mbctl-auto-update.timer').`,
		Example: `  mbctl machines auto-update --dry-run
  mbctl machines auto-update --timeout 2m
  mbctl machines auto-update --json | jq -r '.[] | select(.result == "rolled_back") | .name'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Timeout <= 0 {
				return usagef("--timeout %s: want a positive duration", opts.Timeout)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesAutoUpdateRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.DryRun, "dry-run", false, "say which machines would be upgraded, change nothing")
	fl.DurationVar(&opts.Timeout, "timeout", autoUpdateTimeout, "how long a restarted machine has to come up before it is rolled back")
	fl.BoolVar(&opts.JSON, "json", false, "print the results as a JSON array")
	return cmd
}

// What auto-update did to a machine (autoUpdateResult.Result).
const (
	autoUpToDate     = "up_to_date"
	autoWouldUpgrade = "would_upgrade"
	autoUpgraded     = "upgraded"
	autoRolledBack   = "rolled_back"
	autoSkipped      = "skipped"
	autoFailed       = "failed"
)

// autoUpdateResult is one machine's line of `machines auto-update`, and
// its --json form.
type autoUpdateResult struct {
	Name string `json:"name"`
	// Image is the machine's reference; From the digest it had, To the
	// one the reference names now.
	Image string `json:"image,omitempty"`
	From  string `json:"from,omitempty"`
	To    string `json:"to,omitempty"`
	// Result is up_to_date, would_upgrade, upgraded, rolled_back, skipped
	// or failed.
	Result string `json:"result"`
	// Running tells that the machine ran before; Restarted that it was
	// restarted on the new image and stayed up.
	Running   bool `json:"running"`
	Restarted bool `json:"restarted"`
	// Message says why the machine failed, was rolled back or skipped.
	Message string `json:"message,omitempty"`
}

func (r autoUpdateResult) failed() bool { return r.Result == autoFailed || r.Result == autoRolledBack }

// summary is the RESULT column.
func (r autoUpdateResult) summary() string {
	s := strings.ReplaceAll(r.Result, "_", " ")
	switch {
	case r.Result == autoUpgraded && r.Restarted:
		s = "upgraded and restarted"
	case r.Result == autoUpgraded && !r.Running:
		s = "upgraded, not started (it was stopped)"
	case r.Result == autoWouldUpgrade && r.Running:
		s = "would upgrade and restart"
	}
	if r.Message != "" {
		s += ": " + r.Message
	}
	return s
}

func (o *MachinesAutoUpdateOptions) setDefaults() {
	if o.Timeout == 0 {
		o.Timeout = autoUpdateTimeout
	}
	if o.Settle == 0 {
		o.Settle = autoUpdateSettle
	}
	if o.Poll == 0 {
		o.Poll = autoUpdatePoll
	}
	if o.Resolve == nil {
		o.Resolve = func(ctx context.Context, cfg config.Config, ref string) (string, error) {
			im, err := resolveImage(ctx, cfg, o.Log, ref, "")
			if err != nil {
				return "", err
			}
			return im.Digest.String(), nil
		}
	}
	if o.Upgrade == nil {
		o.Upgrade = upgradeMachine
	}
	if o.Rollback == nil {
		o.Rollback = provision.Rollback
	}
}

func machinesAutoUpdateRun(ctx context.Context, opts *MachinesAutoUpdateOptions) error {
	opts.setDefaults()
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	names, err := machine.Names(cfg.Paths)
	if err != nil {
		return err
	}
	results := []autoUpdateResult{}
	var errs []error
	for _, name := range names {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("interrupted before machine %s", name))
			break
		}
		r, opted := opts.machine(ctx, cfg, name)
		if !opted {
			continue
		}
		results = append(results, r)
		if r.failed() {
			errs = append(errs, fmt.Errorf("machine %s: %s", r.Name, r.summary()))
		}
	}
	if len(results) == 0 && !opts.JSON {
		fmt.Fprintf(opts.IO.ErrOut, "No machine opts in to auto-update: add %s=%s to a machine's man8env.env.\n", man8env.KeyAutoUpdate, man8env.AutoUpdateRegistry)
	}
	if opts.JSON {
		if err := writeJSON(opts.IO.Out, results); err != nil {
			return err
		}
	} else if len(results) > 0 {
		tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFROM\tTO\tRESULT")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, orDash(shortDigest(r.From)), orDash(shortDigest(r.To)), r.summary())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// machine auto-updates machine name; opted is false when it does not opt
// in (nothing is reported about it then).
func (o *MachinesAutoUpdateOptions) machine(ctx context.Context, cfg config.Config, name string) (r autoUpdateResult, opted bool) {
	r = autoUpdateResult{Name: name}
	fail := func(format string, args ...any) (autoUpdateResult, bool) {
		r.Result, r.Message = autoFailed, fmt.Sprintf(format, args...)
		return r, true
	}
	p := machine.PathsFor(cfg.Paths, name)
	env, err := envfile.ReadFile(p.Env)
	if errors.Is(err, fs.ErrNotExist) {
		return r, false
	}
	if err != nil {
		return fail("%s: %v", p.Env, err)
	}
	policy, err := man8env.ParseAutoUpdate(valueOrEmpty(env, man8env.KeyAutoUpdate))
	if err != nil {
		return fail("%s: %v", p.Env, err)
	}
	if policy == man8env.AutoUpdateOff {
		return r, false
	}
	r.Image, r.From = strings.TrimSpace(valueOrEmpty(env, man8env.KeyImageURL)), valueOrEmpty(env, man8env.KeyDigest)
	if r.Image == "" {
		return fail("%s has no %s to follow", p.Env, man8env.KeyImageURL)
	}
	if _, err := os.Stat(p.Rootfs); errors.Is(err, fs.ErrNotExist) {
		r.Result, r.Message = autoSkipped, fmt.Sprintf("no root file system at %s ('mbctl machines rebuild %s' makes it again)", p.Rootfs, name)
		return r, true
	}
	st, err := o.Prober.Probe(p)
	if err != nil {
		return fail("%v", err)
	}
	r.Running = st.Running
	if r.To, err = o.Resolve(ctx, cfg, r.Image); err != nil {
		return fail("resolving %s: %v", r.Image, err)
	}
	if r.To == r.From {
		r.Result = autoUpToDate
		return r, true
	}
	systemd := o.Commands.Host().Systemd
	if st.Running && !systemd {
		r.Result, r.Message = autoSkipped, fmt.Sprintf("runs in the foreground ('mbctl machines run'): stop it and run 'mbctl machines upgrade %s'", name)
		return r, true
	}
	if o.DryRun {
		r.Result = autoWouldUpgrade
		return r, true
	}

	fmt.Fprintf(o.IO.ErrOut, "Upgrading machine %s from %s to %s...\n", name, orDash(shortDigest(r.From)), shortDigest(r.To))
	// Restart lets the upgrade take a running machine (also one started
	// since the probe above); the restart is done below, where it is
	// checked.
	up, err := o.Upgrade(ctx, &MachinesUpgradeOptions{
		MachineDeps: o.MachineDeps, Commands: o.Commands, Getenv: o.Getenv, Ask: o.Ask,
		Name: name, InitMode: string(imageinit.Auto), Restart: true, Yes: true, Quiet: true, RunProbe: probe.Run,
	})
	if err != nil {
		return fail("%v", err)
	}
	r.To, r.Running = up.report.To, up.running
	if up.report.UpToDate { // the tag moved back meanwhile
		r.Result = autoUpToDate
		return r, true
	}
	if !up.running {
		r.Result = autoUpgraded
		return r, true
	}
	probe := func() (machine.State, error) { return o.Prober.Probe(p) }
	err = restartMachine(ctx, o.MachineDeps, o.Commands, name)
	if err == nil {
		err = o.waitUp(ctx, probe)
	}
	if err == nil {
		r.Result, r.Restarted = autoUpgraded, true
		return r, true
	}
	if ctx.Err() != nil {
		return fail("interrupted while it restarted on the new image, which is not checked: 'mbctl machines rollback %s --restart' goes back", name)
	}
	fmt.Fprintf(o.IO.ErrOut, "Machine %s did not come up on %s (%v): rolling back.\n", name, shortDigest(r.To), err)
	if _, rerr := o.Rollback(cfg.Paths, name, o.Log); rerr != nil {
		return fail("it did not come up on the new image (%v), and rolling back failed: %v", err, rerr)
	}
	r.Result, r.Message = autoRolledBack, fmt.Sprintf("it did not come up on the new image (%v)", err)
	rerr := restartMachine(ctx, o.MachineDeps, o.Commands, name)
	if rerr == nil {
		rerr = o.waitUp(ctx, probe)
	}
	if rerr != nil {
		r.Message += fmt.Sprintf(", nor on the old one (%v)", rerr)
	}
	return r, true
}

// waitUp waits until the machine that probe looks at runs, within
// o.Timeout, and has then kept running for o.Settle without its leader
// changing. It fails as soon as the machine stops or restarts after it
// came up.
//
// Running for a while stands in for readiness: once man8s-init tells
// systemd that the app is ready (issue 14, READY=1 and MAN8S_READY), the
// restart itself (systemctl restart, Type=notify) says whether it came
// up, and this settle period can go.
func (o *MachinesAutoUpdateOptions) waitUp(ctx context.Context, probe func() (machine.State, error)) error {
	deadline := time.Now().Add(o.Timeout)
	var up time.Time // when it was first seen running
	id := 0          // its leader (or nspawn) then
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	for {
		st, err := probe()
		if err != nil {
			return err
		}
		now := time.Now()
		cur := st.Leader
		if cur == 0 {
			cur = st.Nspawn
		}
		switch {
		case st.Running && up.IsZero():
			up, id = now, cur
		case st.Running && cur != id:
			return fmt.Errorf("it restarted %s after it came up", now.Sub(up).Round(time.Millisecond))
		case !st.Running && !up.IsZero():
			return fmt.Errorf("it stopped %s after it came up", now.Sub(up).Round(time.Millisecond))
		case !st.Running && now.After(deadline):
			return fmt.Errorf("it did not come up within %s", o.Timeout)
		}
		if !up.IsZero() && now.Sub(up) >= o.Settle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
