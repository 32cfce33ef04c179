package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/faultproxy"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// manyFilesLayer holds n small files: an unpack that takes a while.
func manyFilesLayer(t *testing.T, n int) v1.Layer {
	t.Helper()
	entries := make([]ociimage.Entry, 0, n+1)
	entries = append(entries, ociimage.Entry{Path: "data/", Type: '5', Mode: 0o755})
	for i := range n {
		entries = append(entries, ociimage.File(fmt.Sprintf("data/%03d/f%d", i%500, i), []byte(strconv.Itoa(i)), 0o644))
	}
	l, err := ociimage.Layer(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// unpackPercents returns the unpack bar's percentages in the order the
// screen showed them.
func unpackPercents(screen string) []int {
	var out []int
	for _, m := range regexp.MustCompile(`unpack +(\d+) ?%`).FindAllStringSubmatch(screen, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// Proof (issue 19): a pull from a slow registry on a terminal shows the
// download's rate of the last seconds while it runs, then the unpack bar
// moving with the bytes applied, with the time left, after the downloads
// are done; the final line gives the time of each part. A stalled
// registry is named; plain mode has no control characters.
func TestProgressOnATerminal(t *testing.T) {
	testbed.RequireT(t, busybox)
	reg := registry.StartT(t, registry.Options{})
	proxy := faultproxy.StartT(t, reg.Addr())
	ref := proxy.Addr() + "/apps/big:1"
	img, err := ociimage.BusyboxApp(busybox, ociimage.AppConfig{Entrypoint: []string{"/bin/sh"}}, randomImageLayer(t, 4<<20), manyFilesLayer(t, 40000))
	if err != nil {
		t.Fatal(err)
	}
	pushT(t, img, reg.Addr()+"/apps/big:1")
	proxy.Add(faultproxy.Rule{Path: "/blobs/", Method: "GET", Fault: faultproxy.Throttle, Rate: 1 << 20})
	work := t.TempDir()
	conf := writeConfig(t, work, "")

	term := openTerminal(t)
	term.resize(t, 40, 160)
	cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "oci", "download", ref, filepath.Join(work, "rootfs"))
	done := term.start(t, cmd)
	term.expect(t, "downloading ")
	term.expect(t, "/s")
	term.expect(t, "downloaded ")
	// The downloads are done: the unpack bar moves on by itself.
	afterDownload := len(term.output())
	var err2 error
	select {
	case err2 = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the download did not end:\n%s", term.output())
	}
	screen := term.output()
	if err2 != nil {
		t.Fatalf("oci download: %v\n%s", err2, screen)
	}
	// The bar must rise at least once after the downloads. More rises are
	// not asked for: the disk of a loaded host can hold the unpack for a
	// few redraws and then let it finish at once.
	seen := unpackPercents(screen[afterDownload:])
	moved := false
	for i := 1; i < len(seen); i++ {
		if seen[i] > seen[i-1] {
			moved = true
		}
	}
	if !moved {
		t.Errorf("the unpack bar did not move after the downloads (%v):\n%s", seen, screen)
	}
	if !regexp.MustCompile(`unpacking layer \d/\d \(\d+%\), .* left`).MatchString(screen) {
		t.Errorf("no time left for the unpack:\n%s", screen)
	}
	if !regexp.MustCompile(`took download [0-9.]+m?s, unpack [0-9.]+m?s, finish [0-9.]+m?s`).MatchString(screen) {
		t.Errorf("no time per part:\n%s", screen)
	}
	// The download rate shown after the downloads is their total, not a
	// falling average.
	if strings.Contains(screen[afterDownload:], "downloading ") && !strings.Contains(screen[afterDownload:], "downloaded ") {
		t.Errorf("the download line still runs after the downloads:\n%s", screen[afterDownload:])
	}

	t.Run("stall", func(t *testing.T) {
		stalled := faultproxy.StartT(t, reg.Addr())
		stalled.Add(faultproxy.Rule{Path: "/blobs/", Method: "GET", Fault: faultproxy.Stall, After: 1 << 20})
		conf := writeConfig(t, t.TempDir(), "") // an empty cache
		term := openTerminal(t)
		term.resize(t, 40, 160)
		cmd := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "oci", "download", stalled.Addr()+"/apps/big:1", filepath.Join(t.TempDir(), "rootfs"))
		done := term.start(t, cmd)
		term.expect(t, "waiting for "+stalled.Addr()+": no data for ")
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("Ctrl-C did not stop the stalled download:\n%s", term.output())
		}
	})

	t.Run("plain", func(t *testing.T) {
		out, err := exec.CommandContext(t.Context(), bins.mbctl, "--config", conf, "--progress=plain", "oci", "download", reg.Addr()+"/apps/big:1", filepath.Join(t.TempDir(), "rootfs")).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if strings.ContainsAny(string(out), "\x1b\r") {
			t.Errorf("plain progress holds control characters:\n%q", out)
		}
		for _, want := range []string{"layer 1/3 sha256:", ": in the cache\n", "took download "} {
			if !strings.Contains(string(out), want) {
				t.Errorf("plain progress lacks %q:\n%s", want, out)
			}
		}
	})
	_ = os.RemoveAll(filepath.Join(work, "rootfs"))
}
