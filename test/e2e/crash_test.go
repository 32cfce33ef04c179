package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// faultEnv makes mbctl stop before a step and wait to be killed
// (cli.envFaultPause).
const faultEnv = "MBCTL_FAULT_PAUSE"

// startPaused starts mbctl args with the fault hook at step, and returns
// once mbctl says it stopped there. The caller kills it.
func startPaused(t *testing.T, conf, step string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bins.mbctl, append([]string{"--config", conf}, args...)...)
	cmd.Env = append(os.Environ(), faultEnv+"="+step)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	paused := make(chan string, 1)
	go func() {
		var seen strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "paused before "+step) {
				paused <- ""
				io.Copy(io.Discard, stderr)
				return
			}
		}
		paused <- seen.String()
	}()
	select {
	case out := <-paused:
		if out != "" {
			cmd.Wait()
			t.Fatalf("mbctl %s never paused before %s:\n%s", strings.Join(args, " "), step, out)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("mbctl %s did not reach %s within a minute", strings.Join(args, " "), step)
	}
	return cmd
}

func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// diffIgnoringCache is tree.Diff of two snapshots of work without the
// content cache (which keeps verified blobs) and the journal dir.
func diffIgnoringCache(before, after map[string]tree.Node) []string {
	var out []string
	for _, d := range tree.Diff(before, after) {
		if strings.HasPrefix(d, "/cache") || strings.HasPrefix(d, "/scratch") {
			continue
		}
		out = append(out, d)
	}
	return out
}

func snapshotT(t *testing.T, dir string) map[string]tree.Node {
	t.Helper()
	s, err := tree.Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Proof (issue 18): kill -9 of machines pull at five points, from before
// anything is unpacked to after the last rename, leaves a half machine or
// staging behind; the next mbctl run on the host takes all of it back, and
// the same pull then succeeds with a tree identical to a clean pull's.
func TestMachinesPullKilledLeavesNothing(t *testing.T) {
	testbed.RequireT(t, busybox)
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/crash:1"
	pushT(t, volumeApp(t, randomImageLayer(t, 1<<20)), ref)
	work := t.TempDir()
	conf := machineConfig(t, work, "")
	// A clean pull first: the reference tree, and the shared dirs.
	mustMbctl(t, conf, "machines", "pull", "--yes", "--quiet", ref, "ref")
	before := snapshotT(t, work)

	for _, at := range []string{"unpack", "files", "install:storage", "install:rootfs", "install:machinectl link"} {
		t.Run(at, func(t *testing.T) {
			cmd := startPaused(t, conf, at, "machines", "pull", "--yes", "--quiet", ref, "cut")
			kill9(t, cmd)
			if left := diffIgnoringCache(before, snapshotT(t, work)); len(left) == 0 {
				t.Fatalf("killed before %s, the pull left nothing to clean: the fault point is not where it claims", at)
			}
			// The next mbctl run on this host takes it back.
			out := mustMbctl(t, conf, "host", "clean")
			if !strings.Contains(out, "machines pull cut") {
				t.Errorf("host clean does not name the dead run:\n%s", out)
			}
			if diff := diffIgnoringCache(before, snapshotT(t, work)); len(diff) > 0 {
				t.Fatalf("after kill -9 before %s and host clean, the host changed:\n%s", at, strings.Join(diff, "\n"))
			}
		})
	}

	// Killed once more, then the same pull succeeds by itself (it cleans
	// first), with the reference's tree.
	kill9(t, startPaused(t, conf, "install:rootfs", "machines", "pull", "--yes", "--quiet", ref, "cut"))
	mustMbctl(t, conf, "machines", "pull", "--yes", "--quiet", ref, "cut")
	refTree := snapshotT(t, filepath.Join(work, "machines/ref"))
	cutTree := snapshotT(t, filepath.Join(work, "machines/cut"))
	if diff := tree.Diff(refTree, cutTree); len(diff) > 0 {
		t.Errorf("the pull after a kill differs from a clean one:\n%s", strings.Join(diff, "\n"))
	}
	for _, name := range []string{"ref", "cut"} {
		mustMbctl(t, conf, "machines", "remove", "--yes", name)
	}
}

// Proof (issue 18): kill -9 of oci download before the unpack, mid-download
// (the registry stalls a big layer) and before the final rename leaves a
// staging dir; the next command takes it back and the download succeeds.
func TestDownloadKilledLeavesNothing(t *testing.T) {
	reg := registry.StartT(t, registry.Options{})
	ref := reg.Addr() + "/apps/dl:1"
	pushT(t, randomImage(t, 2, 8<<20), ref)
	stalled := make(chan struct{}, 1)
	proxy := stallingProxy(t, reg.URL(), stalled, 4<<20)
	// One host (the same paths), two configurations: direct, and through
	// the proxy that stalls the big layers.
	work := t.TempDir()
	conf := writeConfig(t, work, "")
	stalling := filepath.Join(t.TempDir(), "stalling.toml")
	if err := os.WriteFile(stalling, []byte(testbed.MbctlConfig(work, "", fmt.Sprintf("[registries.mirrors]\n%q = [%q]\n", reg.Addr(), proxy))), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(work, "out", "rootfs")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshotT(t, work)
	check := func(t *testing.T, what string) {
		t.Helper()
		if m, _ := filepath.Glob(filepath.Join(work, "out", ".rootfs.mbctl-staging-*")); len(m) == 0 {
			t.Fatalf("killed %s, the download left no staging dir: the fault point is not where it claims", what)
		}
		mustMbctl(t, conf, "host", "clean")
		if diff := diffIgnoringCache(before, snapshotT(t, work)); len(diff) > 0 {
			t.Fatalf("after kill -9 %s and host clean, the host changed:\n%s", what, strings.Join(diff, "\n"))
		}
	}
	t.Run("unpack", func(t *testing.T) {
		kill9(t, startPaused(t, conf, "unpack", "oci", "download", "--quiet", ref, dest))
		check(t, "before unpack")
	})
	t.Run("mid-download", func(t *testing.T) {
		cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", stalling, "oci", "download", "--quiet", ref, dest)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-stalled:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the download never reached the big layer")
		}
		kill9(t, cmd)
		check(t, "mid-download")
	})
	// Last: the download before the rename has every blob in the cache.
	t.Run("rename", func(t *testing.T) {
		kill9(t, startPaused(t, conf, "rename", "oci", "download", "--quiet", ref, dest))
		check(t, "before rename")
	})
	// The download then succeeds.
	mustMbctl(t, conf, "oci", "download", "--quiet", ref, dest)
	if _, err := os.Stat(filepath.Join(dest, "blob1")); err != nil {
		t.Errorf("the download after the kills is incomplete: %v", err)
	}
}
