//go:build e2e

package ygg

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRealYggdrasil runs the installed yggdrasil (Debian's 0.4.7 here) in a
// private network namespace, with no peers and no listeners, and reads its
// subnet through the admin socket. It needs root, ip(8), nsenter(1) and
// yggdrasil; it never runs yggdrasil in the caller's network namespace.
func TestRealYggdrasil(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and a TUN")
	}
	ygg, err := exec.LookPath("yggdrasil")
	if err != nil {
		t.Skip("yggdrasil is not installed")
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}

	ns := fmt.Sprintf("mbctl-ygg-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("deleting network namespace %s: %v: %s", ns, err, out)
		}
	})
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")

	dir := socketDir(t)
	sock := filepath.Join(dir, "ygg.sock")
	conf := filepath.Join(dir, "ygg.json")
	writeConfig(t, ygg, conf, sock)
	wantAddr := netip.MustParseAddr(strings.TrimSpace(run(t, ygg, "-useconffile", conf, "-address")))
	wantSubnet := netip.MustParsePrefix(strings.TrimSpace(run(t, ygg, "-useconffile", conf, "-subnet")))

	logFile, err := os.Create(filepath.Join(dir, "ygg.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// nsenter execs yggdrasil, so the PID is yggdrasil's.
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, ygg, "-useconffile", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting yggdrasil: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("yggdrasil log:\n%s", log)
		}
	})

	c, err := NewClient("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	var self Self
	deadline := time.Now().Add(10 * time.Second)
	for {
		self, err = c.GetSelf(t.Context())
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnreachable) || time.Now().After(deadline) {
			t.Fatalf("GetSelf from the real yggdrasil: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("yggdrasil %s %s: address %s subnet %s", self.BuildName, self.BuildVersion, self.Address, self.Subnet)
	if self.Address != wantAddr || self.Subnet != wantSubnet {
		t.Fatalf("GetSelf = %s %s, want %s %s (yggdrasil -address/-subnet)", self.Address, self.Subnet, wantAddr, wantSubnet)
	}
	if len(self.PublicKey) != 64 {
		t.Fatalf("GetSelf public key %q is not 32 bytes of hex", self.PublicKey)
	}
	got, source, err := HostSubnet(t.Context(), "unix://"+sock, "300:2e98:a4b0:1789::/64")
	if err != nil || got != wantSubnet || source != SubnetFromNode {
		t.Fatalf("HostSubnet = %s %q %v, want %s from the node", got, source, err, wantSubnet)
	}

	// Once yggdrasil is gone the client says so and the CLI may fall back.
	stop()
	if _, err := c.GetSelf(t.Context()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("GetSelf after yggdrasil stopped = %v, want ErrUnreachable", err)
	}
}

// writeConfig generates a node configuration that peers with nobody and
// listens only on the admin socket.
func writeConfig(t *testing.T, ygg, path, sock string) {
	t.Helper()
	var conf map[string]any
	if err := json.Unmarshal([]byte(run(t, ygg, "-genconf", "-json")), &conf); err != nil {
		t.Fatalf("parsing yggdrasil -genconf -json: %v", err)
	}
	conf["Peers"] = []string{}
	conf["InterfacePeers"] = map[string]any{}
	conf["Listen"] = []string{}
	conf["MulticastInterfaces"] = []any{}
	conf["AdminListen"] = "unix://" + sock
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}
