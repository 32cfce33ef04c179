package provision

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/signals"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
)

// probeOverrides are set in the probe's man8env.env after everything
// else: the probe has no network, so nothing to wait for and nothing to
// check.
var probeOverrides = []machinefiles.EnvVar{
	{Key: man8env.KeyWaitFor, Value: ""},
	{Key: man8env.KeyCheck, Value: "off"},
}

// ProbeInput is the probe (package probe) of the image unpacked at rootfs,
// run as the machine p describes would run it in exec-pid1 mode: p's
// man8env.env, its settings' Environment= and WorkingDirectory=, its stop
// signal (the image's, or MAN8S_STOP_SIGNAL given in p.Env). p needs the
// image's reference, digest and config; a missing name, template, address,
// version or creation time gets a placeholder ('oci inspect --probe' has no
// machine). The caller sets the Input's scratch dir and journal.
func ProbeInput(rootfs string, p machinefiles.Params) (probe.Input, error) {
	if p.Name == "" {
		p.Name = "probe"
	}
	if p.Template == "" {
		p.Template = man8env.TemplateNetworkIsolated
	}
	if !p.YggAddress.IsValid() {
		p.YggAddress = netip.MustParseAddr("200::1")
	}
	if p.Version == "" {
		p.Version = "probe"
	}
	if p.Created.IsZero() {
		p.Created = time.Now()
	}
	p.Mode, p.KillSignal = imageinit.ExecPID1, "SIGTERM"
	p.Bridge, p.EnvFile, p.Binds = "probe0", man8env.EnvPath, nil
	if p.Uplink == "" {
		p.Uplink = "probe0" // the probe has no network: any name will do
	}
	p.Env = append(append([]machinefiles.EnvVar{}, p.Env...), probeOverrides...)
	env, err := machinefiles.Env(p)
	if err != nil {
		return probe.Input{}, fmt.Errorf("the probe's environment: %w", err)
	}
	settings, err := machinefiles.Settings(p)
	if err != nil {
		return probe.Input{}, fmt.Errorf("the probe's settings: %w", err)
	}
	in := probe.Input{Rootfs: rootfs, Env: env.Bytes()}
	in.WorkingDir, _ = settings.Get("Exec", "WorkingDirectory")
	for _, v := range settings.GetAll("Exec", "Environment") {
		kvs, err := unitfile.ParseEnvironment(v)
		if err != nil {
			return probe.Input{}, fmt.Errorf("the probe's settings: %w", err)
		}
		in.Setenv = append(in.Setenv, kvs...)
	}
	stop, _ := env.Get(man8env.KeyStopSignal)
	if in.StopSignal, err = signals.Parse(stop); err != nil {
		return probe.Input{}, fmt.Errorf("the probe's stop signal: %s: %w", man8env.KeyStopSignal, err)
	}
	return in, nil
}
