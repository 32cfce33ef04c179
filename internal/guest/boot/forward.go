package boot

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/forward"
)

// forwardOptions reads the forwarder's keys: the ports are the image's
// exposed ones and MAN8S_FORWARD_PORTS; none gives ok false. With
// MAN8S_FORWARD_PORTS=off the exposed ports are only reported on (Off).
func forwardOptions(root string, vars map[string]string) (opts forward.Options, ok bool, err error) {
	more, on, err := man8env.ParseForwardPorts(vars[man8env.KeyForwardPorts])
	if err != nil {
		return opts, false, err
	}
	opts.Off = !on
	exposed, err := man8env.ParsePorts(vars[man8env.KeyExposedPorts])
	if err != nil {
		return opts, false, fmt.Errorf("%s (from the image's ExposedPorts): %w", man8env.KeyExposedPorts, err)
	}
	opts.Ports, _ = man8env.ParsePorts(man8env.FormatPorts(append(exposed, more...)))
	if opts.ProxyProtocol, err = man8env.ParseProxyProtocol(vars[man8env.KeyForwardProxyProtocol]); err != nil {
		return opts, false, err
	}
	if s := strings.TrimSpace(vars[man8env.KeyYggAddress]); s != "" {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			opts.Ygg = a
		}
	}
	opts.StatePath = filepath.Join(root, man8env.ForwardPath)
	return opts, len(opts.Ports) > 0, nil
}

// startForwarder starts the forwarder beside the app until ctx ends. It
// reports false when the keys are wrong. inMachine says that the state
// file may be written under root even when it is "/" (the exec-pid1
// renewer, which is not PID 1 or 2).
func startForwarder(ctx context.Context, root string, inMachine bool, vars map[string]string, log io.Writer, step func(string, string, ...any)) (stop func(), ok bool) {
	fo, on, err := forwardOptions(root, vars)
	if err != nil {
		step("forward", "%v", err)
		return func() {}, false
	}
	if !on {
		if fo.Off {
			step("forward", "off (%s=%s)", man8env.KeyForwardPorts, man8env.ForwardOff)
		}
		return func() {}, true
	}
	if root == "/" && os.Getpid() > 2 && !inMachine {
		fo.StatePath = "" // not in a machine: leave the host's /run alone
	}
	fo.Log = stepLogger(log, "forward")
	proxy := "the app sees 127.0.0.1 as the client"
	if fo.ProxyProtocol {
		proxy = "with a PROXY protocol v2 header"
	}
	if fo.Off {
		step("forward", "off (%s=%s): watching %s to report how they are reached", man8env.KeyForwardPorts, man8env.ForwardOff, man8env.FormatPorts(fo.Ports))
	} else {
		step("forward", "watching %s: forwarded from the ygg and ULA addresses to the app where it listens on IPv4 only (%s)", man8env.FormatPorts(fo.Ports), proxy)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := forward.Run(ctx, fo); err != nil {
			step("forward", "%v", err)
		}
	}()
	return func() { cancel(); <-done }, true
}
