// Command demo shows Man8S on one sandboxed host, with nothing installed or
// changed outside a network namespace and a temp dir: it starts a testbed
// host (systemd-networkd with the shipped bridge configuration, yggdrasil)
// and a registry on loopback, pushes a demo image, asks mbctl where the
// demo machine will live and pulls the image with it. Run it with
// `make demo` (as root).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

const machineName = "Man8Demo"

func main() {
	mbctl := flag.String("mbctl", "bin/mbctl", "the mbctl binary to demonstrate")
	keep := flag.Bool("keep", false, "keep the testbed running until Ctrl-C")
	verbose := flag.Bool("v", false, "log the testbed's steps")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *mbctl, *keep, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, mbctl string, keep, verbose bool) (err error) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	dir, err := os.MkdirTemp("", "mbctl-demo-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()

	step("starting a testbed host: network namespace, systemd-networkd, yggdrasil")
	host, err := testbed.NewHost(ctx, testbed.Options{Log: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	fmt.Printf("  namespace      %s\n", host.NetNS)
	fmt.Printf("  bridge         %s: %s, %s, %s/%d\n", host.Bridge, host.IPv4, host.ULA, host.YggGateway(), host.Ygg.Subnet.Bits())
	fmt.Printf("  yggdrasil      node %s, subnet %s\n", host.Ygg.Address, host.Ygg.Subnet)

	step("starting the registry (docker-registry) on loopback")
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	fmt.Printf("  registry       %s\n", reg.URL())

	step("pushing a demo image")
	busybox, err := ociimage.StaticBusybox()
	if err != nil {
		return err
	}
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Cmd:          []string{"httpd", "-f", "-p", "[::]:80", "-h", "/srv/www"},
		Env:          []string{ociimage.DefaultPath, "GREETING=hello from Man8S"},
		WorkingDir:   "/srv/www",
		Volumes:      []string{"/srv/www"},
		ExposedPorts: []string{"80/tcp"},
		StopSignal:   "SIGTERM",
	})
	if err != nil {
		return err
	}
	ref := reg.Addr() + "/demo/httpd:latest"
	digest, err := ociimage.Push(ctx, img, ref)
	if err != nil {
		return err
	}
	fmt.Printf("  image          %s@%s\n", ref, digest)

	step("asking mbctl, inside the testbed host, for the demo machine's address")
	conf := filepath.Join(dir, "mbctl.toml")
	if err := os.WriteFile(conf, []byte(demoConfig(dir, host.YggAdmin, reg.Addr())), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"address", "getsuffix", machineName},
		{"address", "get", machineName},
	} {
		cmd := host.Command(ctx, mbctl, append([]string{"--config", conf}, args...)...)
		out, err := cmd.CombinedOutput()
		fmt.Printf("  $ mbctl %s\n  %s\n", strings.Join(args, " "), strings.TrimSpace(string(out)))
		if err != nil {
			return fmt.Errorf("mbctl %s: %w", strings.Join(args, " "), err)
		}
	}
	step("pulling the demo image with mbctl oci download")
	rootfs := filepath.Join(dir, "rootfs")
	pull := exec.CommandContext(ctx, mbctl, "--config", conf, "oci", "download", ref, rootfs)
	pull.Stdout, pull.Stderr = os.Stdout, os.Stdout
	if err := pull.Run(); err != nil {
		return fmt.Errorf("mbctl oci download: %w", err)
	}
	for _, p := range []string{"bin/busybox", "bin/sh", "etc/os-release"} {
		if fi, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			fmt.Printf("  %-16s %s\n", "/"+p, fi.Mode())
		}
	}
	if keep {
		step("the testbed keeps running; press Ctrl-C to clean up. Enter it with:")
		fmt.Printf("  nsenter --net=%s %s --config %s address get %s\n", host.NetNS, mbctl, conf, machineName)
		<-ctx.Done()
	}
	step("cleaning up")
	return nil
}

func demoConfig(dir, yggAdmin, registryAddr string) string {
	var b strings.Builder
	b.WriteString("[paths]\n")
	for _, k := range []string{"machines", "configs", "storage", "nspawn", "machinectl", "cache", "scratch"} {
		fmt.Fprintf(&b, "%s = %q\n", k, filepath.Join(dir, k))
	}
	fmt.Fprintf(&b, "\n[network]\nygg_admin = %q\n\n[registries]\ninsecure = [%q]\n", yggAdmin, registryAddr)
	return b.String()
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }
