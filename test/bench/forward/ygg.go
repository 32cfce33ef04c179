package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
)

// The -ygg mode: the way a machine on another host reaches one, over the
// Yggdrasil mesh. Two testbed hosts (network namespaces with the real
// yggdrasil, peered over a veth; internal/testbed) stand for the hosts;
// the apps and the forwarder run in host B's namespace on B's Yggdrasil
// address, the client in A's. Every byte crosses both yggdrasils (TUN,
// encryption, the peering's TCP), so the path is what it is in real use;
// the forwarder's cost is measured against that, in the same run.
func runYgg(ctx context.Context, rounds int, d time.Duration, streams int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, b, err := testbed.NewPair(ctx, testbed.Options{Log: log}, testbed.Options{Log: log})
	if err != nil {
		return fmt.Errorf("starting two testbed hosts: %w", err)
	}
	defer b.Close()
	defer a.Close()
	env := []string{pathEnv + "=ygg", machineEnv + "=" + b.Ygg.Address.String()}
	m, mIn, mOut, err := startRole(ctx, []string{"nsenter", "--net=" + b.NetNS, "--"}, "machine", env, rounds, d, streams)
	if err != nil {
		return err
	}
	defer func() { mIn.Close(); m.Wait() }()
	c, cIn, cOut, err := startRole(ctx, []string{"nsenter", "--net=" + a.NetNS, "--"}, "client", env, rounds, d, streams)
	if err != nil {
		return err
	}
	defer func() { cIn.Close(); c.Wait() }()
	return runRoles(mIn, mOut, cIn, cOut)
}
