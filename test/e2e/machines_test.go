package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// yggPrefix is the Yggdrasil subnet the machine tests configure (no
// yggdrasil needed: network.ygg_prefix is the fallback).
const yggPrefix = "300:1234:5678:9abc::/64"

// machineConfig writes a config for machine tests under work.
func machineConfig(t *testing.T, work, extra string) string {
	t.Helper()
	return writeConfig(t, work, fmt.Sprintf("[network]\nygg_admin = %q\nygg_prefix = %q\n%s",
		"unix://"+filepath.Join(work, "no-ygg.sock"), yggPrefix, extra))
}

// volumeLayer holds two volumes' content: /var/lib/app (data owned by
// 1000:1001, a hardlink, a symlink, an xattr) and /etc/app (a config file).
func volumeLayer(t *testing.T) v1.Layer {
	t.Helper()
	l, err := ociimage.Layer(
		ociimage.Entry{Path: "var/lib/app/", Type: '5', Mode: 0o750, UID: 1000, GID: 1001},
		ociimage.Entry{Path: "var/lib/app/db", Type: '0', Mode: 0o640, UID: 1000, GID: 1001, Content: []byte("rows"), Xattrs: map[string]string{"user.kind": "db"}},
		ociimage.Entry{Path: "var/lib/app/db.hard", Type: '1', Linkname: "var/lib/app/db"},
		ociimage.Entry{Path: "var/lib/app/current", Type: '2', Linkname: "db", UID: 1000, GID: 1001},
		ociimage.File("etc/app/app.conf", []byte("port=8080\n"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// volumeApp is a busybox app with the volumes of volumeLayer.
func volumeApp(t *testing.T, extra ...v1.Layer) v1.Image {
	t.Helper()
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo started; exec sleep 1000"},
		Env:        []string{ociimage.DefaultPath, "APP_PORT=8080"},
		StopSignal: "SIGQUIT", Volumes: []string{"/var/lib/app", "/etc/app"},
	}, append([]v1.Layer{volumeLayer(t)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushT(t *testing.T, img v1.Image, ref string) {
	t.Helper()
	if _, err := ociimage.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
}

func mustMbctl(t *testing.T, conf string, args ...string) string {
	t.Helper()
	out, err := mbctlCmd(t, conf, nil, args...)
	if err != nil {
		t.Fatalf("mbctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Proof (issue 3): machines pull with --volume flags; files, links,
// ownership of the copied volume content and both generated files; list,
// show; remove refusing while the machine runs under systemd-nspawn; remove
// with --keep-data, then without.
func TestMachinesPullListShowRemove(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/volume-app:1"
	pushT(t, volumeApp(t), ref)
	work := t.TempDir()
	conf := machineConfig(t, work, "")

	out := mustMbctl(t, conf, "machines", "pull", "--quiet", ref, "app1", "--volume", "/var/lib/app=data", "--volume", "/etc/app=config")
	for _, want := range []string{"Machine app1 created", "300:1234:5678:9abc:", "Init: detected none", "mode supervise", "mbctl machines start app1"} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	rootfs := filepath.Join(work, "machines/app1")
	confDir := filepath.Join(work, "configs/app1")
	data := filepath.Join(work, "storage/app1/var/lib/app")
	// Links.
	for link, target := range map[string]string{
		filepath.Join(work, "nspawn/app1.nspawn"): filepath.Join(confDir, "container.nspawn"),
		filepath.Join(work, "machinectl/app1"):    rootfs,
	} {
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %s", link, got, err, target)
		}
	}
	// The copied data volume is the image's dir: owners, modes, links, xattrs.
	img, err := tree.Snapshot(filepath.Join(rootfs, "var/lib/app"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tree.Snapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := tree.Diff(img, got); len(diff) > 0 {
		t.Errorf("data volume differs from the image:\n%s", strings.Join(diff, "\n"))
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(data, "db"), &st); err != nil || st.Uid != 1000 || st.Gid != 1001 || st.Nlink != 2 {
		t.Errorf("db: uid %d gid %d nlink %d (%v)", st.Uid, st.Gid, st.Nlink, err)
	}
	if b, err := os.ReadFile(filepath.Join(confDir, "etc/app/app.conf")); err != nil || string(b) != "port=8080\n" {
		t.Errorf("config volume: %q %v", b, err)
	}
	settings := readFileT(t, filepath.Join(confDir, "container.nspawn"))
	for _, want := range []string{
		"ProcessTwo=yes\n", "KillSignal=SIGRTMIN+3\n", "Parameters=/man8s-init/man8s-init\n", "Bridge=srvgrp0\n",
		"Bind=" + filepath.Join(confDir, "man8env.env") + ":/man8env.env:idmap\n",
		"Bind=" + data + ":/var/lib/app:idmap\n",
		"Bind=" + filepath.Join(confDir, "etc/app") + ":/etc/app:idmap\n",
	} {
		if !strings.Contains(settings, want) {
			t.Errorf("container.nspawn lacks %q:\n%s", want, settings)
		}
	}
	env := readFileT(t, filepath.Join(confDir, "man8env.env"))
	for _, want := range []string{
		"MAN8S_CONTAINER_NAME=app1\n", "MAN8S_STOP_SIGNAL=SIGQUIT\n", "APP_PORT=8080\n",
		"MAN8S_APPLICATION_ARGS=/bin/sh -c 'echo started; exec sleep 1000'\n", "MAN8S_OCI_IMAGE_URL=" + ref + "\n",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("man8env.env lacks %q:\n%s", want, env)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "man8s-init/man8s-init")); err != nil {
		t.Errorf("man8s-init not installed: %v", err)
	}

	out = mustMbctl(t, conf, "machines", "list")
	if !regexpMatch(`(?m)^app1\s+stopped\s+-\s+`+regexpQuote(ref)+`\s+300:1234:5678:9abc:`, out) {
		t.Errorf("list:\n%s", out)
	}
	out = mustMbctl(t, conf, "machines", "show", "app1")
	if !strings.Contains(out, "Init mode:") || !strings.Contains(out, "supervise") || !strings.Contains(out, "Bind=") {
		t.Errorf("show:\n%s", out)
	}

	// Running: remove refuses and names the way to stop it.
	nctx, cancel := context.WithCancel(t.Context())
	nspawn := stopGently(exec.CommandContext(nctx, "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-M", "app1", "-D", rootfs,
		"--private-network", "/bin/sleep", "1000"))
	nspawn.Stdout, nspawn.Stderr = os.Stderr, os.Stderr
	if err := nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	stopNspawn := sync.OnceFunc(func() { cancel(); nspawn.Wait() })
	t.Cleanup(stopNspawn)
	waitFor(t, "machine app1 running", func() bool {
		out, _ := mbctlCmd(t, conf, nil, "machines", "list")
		return strings.Contains(out, "running")
	})
	out, err = mbctlCmd(t, conf, nil, "machines", "remove", "--yes", "app1")
	if err == nil || !strings.Contains(out, "is running") || !strings.Contains(out, "mbctl machines stop app1") {
		t.Errorf("remove of a running machine: %v\n%s", err, out)
	}
	out = mustMbctl(t, conf, "machines", "show", "app1")
	if !strings.Contains(out, "running (") {
		t.Errorf("show of a running machine:\n%s", out)
	}
	stopNspawn()

	out = mustMbctl(t, conf, "machines", "remove", "--yes", "--keep-data", "app1")
	if !strings.Contains(out, "Kept:") || !strings.Contains(out, "storage dir") || !strings.Contains(out, "config dir") {
		t.Errorf("remove --keep-data:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(confDir, "man8env.env")); err != nil {
		t.Errorf("--keep-data deleted the config dir: %v", err)
	}
	for _, p := range []string{rootfs, filepath.Join(work, "nspawn/app1.nspawn"), filepath.Join(work, "machinectl/app1")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after remove", p)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "db")); err != nil {
		t.Errorf("--keep-data deleted the data: %v", err)
	}
	out = mustMbctl(t, conf, "machines", "remove", "--yes", "app1")
	if !strings.Contains(out, "Already missing:") {
		t.Errorf("remove of the leftovers:\n%s", out)
	}
	if out, err = mbctlCmd(t, conf, nil, "machines", "remove", "--yes", "app1"); err == nil || !strings.Contains(out, "does not exist") {
		t.Errorf("third remove: %v\n%s", err, out)
	}
}

// Proof (issue 3): the volume questions answered through a real
// pseudo-terminal, as a person types, including a wrong answer and a
// custom dir that already exists.
func TestMachinesPullAsksOnATerminal(t *testing.T) {
	testbed.RequireT(t, busybox)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/volume-app:1"
	pushT(t, volumeApp(t), ref)
	work := t.TempDir()
	conf := machineConfig(t, work, "")
	custom := filepath.Join(work, "srv/app-data")

	term := openTerminal(t)
	cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "machines", "pull", ref, "asked")
	done := term.start(t, cmd)
	// Volumes are asked in path order: /etc/app, then /var/lib/app.
	term.expect(t, "The image declares the volume /etc/app.")
	term.expect(t, "Choice [2]: ")
	term.typeLine(t, "7")
	term.expect(t, "Please answer 1, 2, 3 or 4.")
	term.expect(t, "Choice [2]: ")
	term.typeLine(t, "1")
	term.expect(t, "The image declares the volume /var/lib/app.")
	term.expect(t, "Choice [2]: ")
	term.typeLine(t, "3")
	term.expect(t, "Host dir (absolute path, must not exist yet): ")
	existing := filepath.Join(work, "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	term.typeLine(t, existing)
	term.expect(t, "already exists")
	term.expect(t, "Host dir (absolute path, must not exist yet): ")
	term.typeLine(t, custom)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pull: %v\n%s", err, term.output())
		}
	case <-time.After(120 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("pull did not finish:\n%s", term.output())
	}
	if b, err := os.ReadFile(filepath.Join(work, "configs/asked/etc/app/app.conf")); err != nil || string(b) != "port=8080\n" {
		t.Errorf("config volume: %q %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(custom, "db"), &st); err != nil || st.Uid != 1000 {
		t.Errorf("custom volume: uid %d, %v\n%s", st.Uid, err, term.output())
	}
	settings := readFileT(t, filepath.Join(work, "configs/asked/container.nspawn"))
	if !strings.Contains(settings, "Bind="+custom+":/var/lib/app:idmap\n") {
		t.Errorf("settings lack the custom bind:\n%s", settings)
	}
	// remove keeps a custom volume dir and says so.
	out := mustMbctl(t, conf, "machines", "remove", "--yes", "asked")
	if !strings.Contains(out, "custom volume dir") || !strings.Contains(out, custom) {
		t.Errorf("remove did not name the kept custom dir:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(custom, "db")); err != nil {
		t.Errorf("remove deleted the custom volume: %v", err)
	}
}

// Proof (issue 3): refusals before any download (existing config dir, no
// Yggdrasil subnet, unanswered volumes without a terminal), and SIGINT
// while layers download and unpack leaves nothing behind.
func TestMachinesPullRefusesAndCleansUp(t *testing.T) {
	testbed.RequireT(t, busybox)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/big:1"
	// A small first layer that unpacks at once and a big second one the
	// proxy stalls: the interrupt lands while the rootfs is half unpacked.
	img := volumeApp(t, randomImageLayer(t, 8<<20))
	pushT(t, img, ref)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var blobPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		blobPaths = append(blobPaths, "/blobs/"+d.String())
	}
	layerGets := func() int {
		n, err := reg.CountRequests("GET", blobPaths[0], blobPaths[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	work := t.TempDir()
	conf := machineConfig(t, work, "")
	if err := os.MkdirAll(filepath.Join(work, "configs/taken"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "nspawn/taken.nspawn"), "", 0o644)
	out, err := mbctlCmd(t, conf, nil, "machines", "pull", "--yes", ref, "taken")
	if err == nil || !strings.Contains(out, filepath.Join(work, "configs/taken")) || !strings.Contains(out, filepath.Join(work, "nspawn/taken.nspawn")) {
		t.Errorf("pull over an existing config dir: %v\n%s", err, out)
	}
	out, err = mbctlCmd(t, conf, nil, "machines", "pull", ref, "novols")
	if err == nil || !strings.Contains(out, "/etc/app, /var/lib/app") || !strings.Contains(out, "--volume") {
		t.Errorf("pull without a terminal and unanswered volumes: %v\n%s", err, out)
	}
	noYgg := writeConfig(t, t.TempDir(), fmt.Sprintf("[network]\nygg_admin = %q\n", "unix://"+filepath.Join(work, "absent.sock")))
	out, err = mbctlCmd(t, noYgg, nil, "machines", "pull", "--yes", ref, "noygg")
	if err == nil || !strings.Contains(out, "Yggdrasil") {
		t.Errorf("pull without a Yggdrasil subnet: %v\n%s", err, out)
	}
	if n := layerGets(); n != 0 {
		t.Errorf("refused pulls fetched %d layer blobs", n)
	}

	// SIGINT mid-download and mid-unpack.
	stalled := make(chan struct{}, 1)
	proxy := stallingProxy(t, reg.URL(), stalled, 4<<20)
	work = t.TempDir()
	conf = machineConfig(t, work, fmt.Sprintf("[registries.mirrors]\n%q = [%q]\n", reg.Addr(), proxy))
	before, err := tree.Snapshot(work)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "machines", "pull", "--yes", ref, "cut")
	var cmdOut strings.Builder
	cmd.Stdout, cmd.Stderr = &cmdOut, &cmdOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the download never reached the big blob\n%s", cmdOut.String())
	}
	waitFor(t, "the first layers unpacked into the staging rootfs", func() bool {
		m, _ := filepath.Glob(filepath.Join(work, "machines/.cut.mbctl-staging-*/var/lib/app/db"))
		return len(m) == 1
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(cmdOut.String(), "interrupted") {
		t.Errorf("interrupted pull: %v\n%s", err, cmdOut.String())
	}
	after, err := tree.Snapshot(work)
	if err != nil {
		t.Fatal(err)
	}
	// The content cache may keep the verified blobs it got, and the shared
	// parent dirs stay (empty: another machine may have moved in); nothing
	// else may differ.
	var diff []string
	for _, d := range tree.Diff(before, after) {
		if strings.Contains(d, "cache") || sharedDirAdded(t, work, d) {
			continue
		}
		diff = append(diff, d)
	}
	if len(diff) > 0 {
		t.Errorf("the interrupted pull left changes:\n%s", strings.Join(diff, "\n"))
	}
}

// sharedDirAdded reports whether the tree.Diff line d is one of the shared
// machine dirs under work (machines, configs, ...), created and left empty.
func sharedDirAdded(t *testing.T, work, d string) bool {
	t.Helper()
	path, what, _ := strings.Cut(d, ": ")
	if !strings.HasPrefix(what, "only in the second tree") ||
		!slices.Contains([]string{"/machines", "/configs", "/storage", "/nspawn", "/machinectl", "/scratch", "/scratch/journals"}, path) {
		return false
	}
	entries, err := os.ReadDir(filepath.Join(work, path))
	if path == "/scratch" {
		return err == nil && len(entries) == 1 && entries[0].Name() == "journals"
	}
	return err == nil && len(entries) == 0
}

// randomImageLayer is one layer of size incompressible bytes.
func randomImageLayer(t *testing.T, size int) v1.Layer {
	t.Helper()
	img := randomImage(t, 1, size)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls[0]
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !poll(60*time.Second, nil, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Proof (issue 18, data loss): two pulls on a fresh host, where none of the
// machine dirs exist yet. B completes while A is stalled mid-download; then
// Ctrl-C of A. A's undo takes only what A made: B, and the shared dirs it
// lives in, stay whole, and B pulls again once removed.
func TestMachinesPullInterruptedKeepsConcurrentMachine(t *testing.T) {
	testbed.RequireT(t, busybox)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/big:1"
	pushT(t, volumeApp(t, randomImageLayer(t, 8<<20)), ref)
	stalled := make(chan struct{}, 1)
	proxy := stallingProxy(t, reg.URL(), stalled, 4<<20)

	// One host (the same paths), two configurations: A reaches the
	// registry through the stalling proxy, B directly.
	work := t.TempDir()
	confA := writeConfig(t, t.TempDir(), "")
	if err := os.WriteFile(confA, []byte(testbed.MbctlConfig(work, "", fmt.Sprintf("[network]\nygg_prefix = %q\nygg_admin = %q\n[registries.mirrors]\n%q = [%q]\n",
		yggPrefix, "unix://"+filepath.Join(work, "no-ygg.sock"), reg.Addr(), proxy))), 0o644); err != nil {
		t.Fatal(err)
	}
	confB := machineConfig(t, work, "")

	a := exec.CommandContext(t.Context(), bins.mbctl, "--config", confA, "machines", "pull", "--yes", ref, "ma")
	var outA strings.Builder
	a.Stdout, a.Stderr = &outA, &outA
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	case <-time.After(60 * time.Second):
		a.Process.Kill()
		a.Wait()
		t.Fatalf("pull ma never reached the big blob\n%s", outA.String())
	}
	mustMbctl(t, confB, "machines", "pull", "--yes", "--quiet", ref, "mb")
	if err := a.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := a.Wait(); err == nil || !strings.Contains(outA.String(), "interrupted") {
		t.Fatalf("interrupted pull ma: %v\n%s", err, outA.String())
	}

	for _, p := range []string{"machines/mb/bin/busybox", "configs/mb/container.nspawn", "configs/mb/man8env.env",
		"storage/mb/var/lib/app/db", "nspawn/mb.nspawn", "machinectl/mb"} {
		if _, err := os.Lstat(filepath.Join(work, p)); err != nil {
			t.Errorf("after ma's interrupt, mb lost %s: %v", p, err)
		}
	}
	for _, d := range []string{"machines", "configs", "storage"} {
		left, _ := filepath.Glob(filepath.Join(work, d, "*ma*"))
		if len(left) > 0 {
			t.Errorf("ma left %v", left)
		}
	}
	if out := mustMbctl(t, confB, "machines", "list"); !strings.Contains(out, "mb") {
		t.Errorf("machines list after the interrupt lacks mb:\n%s", out)
	}
	mustMbctl(t, confB, "machines", "remove", "--yes", "mb")

	// Two pulls started together on a fresh host both make it: creating
	// the shared dirs is not a race.
	work = t.TempDir()
	conf := machineConfig(t, work, "")
	errs := make(chan error, 2)
	for _, name := range []string{"p1", "p2"} {
		go func() {
			out, err := mbctlCmd(t, conf, nil, "machines", "pull", "--yes", "--quiet", ref, name)
			if err != nil {
				err = fmt.Errorf("pull %s: %w\n%s", name, err, out)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
