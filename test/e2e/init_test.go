package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// stopApp records the signals it gets; it exits on SIGQUIT.
const stopApp = `trap 'echo HUP >> /signals' HUP
trap 'echo TERM >> /signals' TERM
trap 'echo QUIT >> /signals; exit 0' QUIT
echo ready > /ready
while true; do sleep 0.1; done
`

// initRootfs builds a busybox rootfs at dir with man8s-init installed as
// /man8s-init/man8s-init, and writes files (path in the rootfs: content,
// mode 0755) into it.
func initRootfs(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	if err := ociimage.Rootfs(dir, busybox); err != nil {
		t.Fatal(err)
	}
	initBin, err := os.ReadFile(filepath.Join(bins.dir, "man8s-init"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "man8s-init/man8s-init"), string(initBin), 0o755)
	for p, c := range files {
		writeFile(t, filepath.Join(dir, p), c, 0o755)
	}
	return dir
}

// Proof (issue 5, stop): under systemd-nspawn, stopping the machine the way
// systemd does (SIGTERM to nspawn, KillSignal=SIGRTMIN+3) reaches an app
// whose image says StopSignal=SIGQUIT as exactly one SIGQUIT: no SIGTERM,
// no SIGHUP; the machine ends with the app's exit status.
func TestInitTranslatesTheStopSignal(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	rootfs := initRootfs(t, filepath.Join(t.TempDir(), "rootfs"), map[string]string{
		"app.sh":      stopApp,
		"man8env.env": "MAN8S_APPLICATION_ARGS=/bin/sh /app.sh\nMAN8S_STOP_SIGNAL=SIGQUIT\nMAN8S_STOP_TIMEOUT=20\n",
	})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := stopGently(exec.CommandContext(ctx, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"-M", "stoptest", "-D", rootfs, "--private-network", "--as-pid2", "--kill-signal=SIGRTMIN+3",
		"/man8s-init/man8s-init"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !poll(30*time.Second, nil, fileExists(filepath.Join(rootfs, "ready"))) {
		cancel() // SIGTERM: see stopGently
		cmd.Wait()
		t.Fatalf("the app never started\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the machine did not end cleanly: %v\n%s", err, out.String())
	}
	got, _ := os.ReadFile(filepath.Join(rootfs, "signals"))
	if string(got) != "QUIT\n" {
		t.Errorf("the app received %q, want exactly one SIGQUIT\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), "man8s-init: app: exited with status 0") {
		t.Errorf("man8s-init did not report the app's exit:\n%s", out.String())
	}
}

// Proof (issue 5): a distroless-style image (no /bin/sh) starts from the
// in-process argument parser, and the app's exit status is the machine's.
func TestInitStartsDistrolessAppAndPassesItsStatus(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	rootfs := distroless(t)
	for src, dst := range map[string]string{filepath.Join(bins.dir, "man8s-init"): "man8s-init/man8s-init", busybox: "busybox"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(rootfs, dst), string(data), 0o755)
	}
	// Quoted words that a shell would have to parse; there is none.
	writeFile(t, filepath.Join(rootfs, "man8env.env"), "MAN8S_APPLICATION_ARGS=/busybox sh -c 'echo \"args ok: $0\"; exit 5' 'zero arg'\n", 0o644)

	out, err := nspawn(t, rootfs, "distroless", []string{"--as-pid2"}, "/man8s-init/man8s-init")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 5 {
		t.Errorf("machine ended with %v, want exit status 5\n%s", err, out)
	}
	if !strings.Contains(out, "args ok: zero arg") {
		t.Errorf("the app did not get its arguments:\n%s", out)
	}
}

// ttyApp reads a line from its terminal, then records SIGINT.
const ttyApp = `trap 'echo INT >> /signals; exit 0' INT
echo ready > /ready
read line
echo "$line" > /line
while true; do sleep 0.1; done
`

// Proof (issue 5, tty): run on a terminal, the app is the terminal's
// foreground process group: it can read what is typed (a background group
// would be stopped by SIGTTIN) and Ctrl-C reaches it as SIGINT.
func TestInitCtrlCReachesTheApp(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	rootfs := initRootfs(t, filepath.Join(t.TempDir(), "rootfs"), map[string]string{
		"app.sh":      ttyApp,
		"man8env.env": "MAN8S_APPLICATION_ARGS=/bin/sh /app.sh\n",
	})

	term := openTerminal(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := stopGently(exec.CommandContext(ctx, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"-M", "ttytest", "-D", rootfs, "--private-network", "--as-pid2", "--kill-signal=SIGRTMIN+3",
		"/man8s-init/man8s-init"))
	done := term.start(t, cmd)
	if !poll(30*time.Second, nil, fileExists(filepath.Join(rootfs, "ready"))) {
		cancel() // SIGTERM: see stopGently
		<-done
		t.Fatalf("the app never started\n%s", term.output())
	}
	if _, err := term.master.Write([]byte("typed\r")); err != nil {
		t.Fatal(err)
	}
	typed := func() bool { got, _ := os.ReadFile(filepath.Join(rootfs, "line")); return string(got) == "typed\n" }
	if !poll(10*time.Second, nil, typed) {
		cancel() // SIGTERM: see stopGently
		<-done
		t.Fatalf("the app could not read its terminal\n%s", term.output())
	}
	if _, err := term.master.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("machine ended with %v\n%s", err, term.output())
		}
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatalf("Ctrl-C did not end the app\n%s", term.output())
	}
	if got, _ := os.ReadFile(filepath.Join(rootfs, "signals")); string(got) != "INT\n" {
		t.Errorf("the app received %q, want SIGINT\n%s", got, term.output())
	}
}
