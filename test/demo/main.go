// Command demo runs the whole Man8S scenario on one sandboxed host, with
// nothing installed or changed outside a network namespace and a temp dir.
// It starts a testbed host (systemd-networkd with the shipped bridge
// configuration, yggdrasil) and a registry on loopback, packages the real
// docker-registry as an image, and with mbctl: creates machine
// Man8Registry from it, runs it, pushes an image into it over the
// machine's Yggdrasil address, pulls that image back with `mbctl oci
// download`, looks inside with `machines shell`, stops it and removes it.
// Run it with `make demo` (as root).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/proc"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

const machineName = "Man8Registry"

func main() {
	mbctl := flag.String("mbctl", "bin/mbctl", "the mbctl binary to demonstrate (man8s-init beside it)")
	keep := flag.Bool("keep", false, "keep the machine running until Ctrl-C before stopping and removing it")
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
	if mbctl, err = filepath.Abs(mbctl); err != nil {
		return err
	}
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

	step("starting a registry (docker-registry) on loopback as the image source")
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, reg.Close()) }()
	busybox, err := ociimage.StaticBusybox()
	if err != nil {
		return err
	}
	img, err := ociimage.RegistryApp(ctx, busybox)
	if err != nil {
		return err
	}
	ref := reg.Addr() + "/library/registry:latest"
	if _, err := ociimage.Push(ctx, img, ref); err != nil {
		return err
	}
	fmt.Printf("  image          %s (the real docker-registry, Volume /var/lib/registry, port 5000)\n", ref)

	m, err := testbed.NewMbctl(host, mbctl, filepath.Join(dir, "man8s"), "")
	if err != nil {
		return err
	}
	sh := func(args ...string) (string, error) {
		fmt.Printf("  $ mbctl %s\n", strings.Join(args, " "))
		out, err := m.Command(ctx, args...).CombinedOutput()
		fmt.Print(indent(string(out)))
		if err != nil {
			return string(out), fmt.Errorf("mbctl %s: %w", strings.Join(args, " "), err)
		}
		return string(out), nil
	}

	step("creating machine " + machineName)
	if _, err := sh("machines", "pull", "--quiet", ref, machineName, "--volume", "/var/lib/registry=data"); err != nil {
		return err
	}

	step("running it (in the testbed host, as 'mbctl machines run " + machineName + "')")
	runCmd := m.Command(context.Background(), "machines", "run", machineName)
	var console proc.Buffer
	runCmd.Stdout, runCmd.Stderr = &console, &console
	if err := runCmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- runCmd.Wait() }()
	stopped := false
	stopMachine := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = runCmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(60 * time.Second):
			_ = runCmd.Process.Kill()
			<-exited
			return errors.New("the machine did not stop within 60s")
		}
	}
	defer func() {
		if !stopped {
			err = errors.Join(err, stopMachine())
		}
	}()

	addr, err := yggaddr.Address(host.Ygg.Subnet, machineName)
	if err != nil {
		return err
	}
	endpoint := netip.AddrPortFrom(addr, 5000).String()
	step("pushing an image into the machine's registry at its Yggdrasil address " + endpoint)
	hello, err := helloImage()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = ociimage.Push(pctx, hello, endpoint+"/demo/hello:1", ociimage.WithDialer(host.DialContext), ociimage.WithPlainHTTP())
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pushing to %s: %w\nmachine console:\n%s", endpoint, err, console.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("  pushed         %s/demo/hello:1\n", endpoint)
	fmt.Print(indent("man8s-init in the machine:\n" + initLines(console.String())))

	step("pulling it back with mbctl oci download, over Yggdrasil")
	dlConf := filepath.Join(dir, "download.toml")
	if err := os.WriteFile(dlConf, []byte(testbed.MbctlConfig(filepath.Join(dir, "dl"), "", fmt.Sprintf("[registries]\ninsecure = [%q]\n", endpoint))), 0o644); err != nil {
		return err
	}
	dest := filepath.Join(dir, "hello")
	if out, err := host.Command(ctx, mbctl, "--config", dlConf, "oci", "download", endpoint+"/demo/hello:1", dest).CombinedOutput(); err != nil {
		return fmt.Errorf("mbctl oci download: %w\n%s", err, out)
	}
	greeting, err := os.ReadFile(filepath.Join(dest, "hello.txt"))
	if err != nil {
		return err
	}
	fmt.Printf("  /hello.txt     %s", greeting)

	step("looking inside the machine")
	if _, err := sh("machines", "list"); err != nil {
		return err
	}
	if _, err := sh("machines", "shell", machineName, "--", "ls", "/var/lib/registry/docker/registry/v2/repositories"); err != nil {
		return err
	}
	if _, err := sh("machines", "shell", "--network-only", machineName, "--", "ip", "-6", "-o", "addr", "show", "scope", "global"); err != nil {
		return err
	}
	if keep {
		step("the machine keeps running; press Ctrl-C to stop and remove it. Enter it with:")
		fmt.Printf("  nsenter --net=%s unshare --mount -- sh -c 'mount --bind %s /run/systemd/nspawn && exec %s --config %s machines shell %s'\n",
			host.NetNS, filepath.Join(m.Dir, "nspawn"), mbctl, m.Config, machineName)
		<-ctx.Done()
	}

	step("stopping it: the registry gets its stop signal; its data stays on the host")
	if err := stopMachine(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
	}
	fmt.Printf("  %s\n", filepath.Join(m.Dir, "storage", machineName, "var/lib/registry/docker/registry/v2/repositories/demo/hello"))
	step("removing it")
	if _, err := sh("machines", "remove", "--yes", machineName); err != nil {
		return err
	}
	step("cleaning up the testbed")
	return nil
}

// helloImage is the image pushed into the machine's registry.
func helloImage() (v1.Image, error) {
	l, err := ociimage.Layer(ociimage.File("hello.txt", []byte("hello from the host, over Yggdrasil\n"), 0o644))
	if err != nil {
		return nil, err
	}
	return ociimage.Image(ociimage.AppConfig{Cmd: []string{"/hello.txt"}}, l)
}

// initLines keeps man8s-init's step lines of a machine's console.
func initLines(console string) string {
	var b strings.Builder
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "man8s-init:") {
			b.WriteString(strings.TrimSpace(l) + "\n")
		}
	}
	return b.String()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }
