package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/netinit"
)

// The test binary doubles as the application: with appEnv set it writes
// what it saw to the file named there, waits for a signal if asked, and
// exits with the code in appExit.
const (
	appEnv  = "MAN8S_INITD_TEST_APP_OUT"
	appExit = "MAN8S_INITD_TEST_APP_EXIT"
)

func TestMain(m *testing.M) {
	if out := os.Getenv(appEnv); out != "" {
		os.Exit(fakeApp(out))
	}
	os.Exit(m.Run())
}

func fakeApp(out string) int {
	line := fmt.Sprintf("args=%q greeting=%q\n", os.Args[1:], os.Getenv("GREETING"))
	if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
		return 100
	}
	var code int
	fmt.Sscan(os.Getenv(appExit), &code)
	return code
}

func writeEnv(t *testing.T, root string, vars map[string]string) {
	t.Helper()
	var b strings.Builder
	for k, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(root, "man8env.env"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunStartsTheApp(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "app.out")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args, err := appargs.Quote([]string{self, "one arg", "$HOME"})
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(root, "ready")
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	writeEnv(t, root, map[string]string{
		man8env.KeyArgs:    args,
		man8env.KeyWaitFor: "file://" + ready,
		appEnv:             out,
		appExit:            "7",
		"GREETING":         "hello world = yes",
	})
	var log bytes.Buffer
	status := Run(t.Context(), Options{Root: root, Log: &log})
	if status != 7 {
		t.Errorf("status %d, want the app's 7\nlog:\n%s", status, log.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the app did not run: %v\nlog:\n%s", err, log.String())
	}
	if want := `args=["one arg" "$HOME"] greeting="hello world = yes"` + "\n"; string(got) != want {
		t.Errorf("app saw %s, want %s", got, want)
	}
	for _, step := range []string{"man8s-init: env:", "man8s-init: restore:", "man8s-init: wait:", "man8s-init: app: starting", "man8s-init: app: exited with status 7"} {
		if !strings.Contains(log.String(), step) {
			t.Errorf("log lacks %q:\n%s", step, log.String())
		}
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"no env file", nil, "man8s-init: env:"},
		{"no args", map[string]string{"X": "1"}, "man8s-init: app: MAN8S_APPLICATION_ARGS"},
		{"needs a shell", map[string]string{man8env.KeyArgs: "echo $HOME"}, "man8s-init: app: MAN8S_APPLICATION_ARGS"},
		{"bad stop signal", map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyStopSignal: "SIGNOPE"}, "MAN8S_STOP_SIGNAL"},
		{"unknown user", map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyUser: "nobody-here"}, "MAN8S_APPLICATION_USER"},
		{"bad wait target", map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyWaitFor: "gopher://x"}, "man8s-init: wait:"},
		{"bad init mode", map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyInitMode: "exec"}, "MAN8S_INIT_MODE"},
		{"bad network setting", map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyYggTable: "main"}, "man8s-init: network: MAN8S_YGG_TABLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.vars != nil {
				writeEnv(t, root, tt.vars)
			}
			var log bytes.Buffer
			if status := Run(t.Context(), Options{Root: root, Log: &log}); status != 1 {
				t.Errorf("status %d, want 1", status)
			}
			if !strings.Contains(log.String(), tt.want) {
				t.Errorf("log %q lacks %q", log.String(), tt.want)
			}
		})
	}
}

// The network step: its failures stop the machine only with
// MAN8S_NETWORK_CHECK=strict; without a link it is skipped unless strict.
func TestRunNetworkFailures(t *testing.T) {
	failed := errors.New("no DHCPv4 lease on host0")
	tests := []struct {
		name       string
		check      string
		err        error
		wantStatus int
		want       string
	}{
		{"warn goes on", "", failed, 0, "man8s-init: network: going on despite failures (MAN8S_NETWORK_CHECK=warn): no DHCPv4 lease"},
		{"strict stops", "strict", failed, 1, "man8s-init: network: failed (MAN8S_NETWORK_CHECK=strict): no DHCPv4 lease"},
		{"off goes on", "off", failed, 0, "going on despite failures (MAN8S_NETWORK_CHECK=off)"},
		{"no link skipped", "", netinit.ErrNoLink, 0, "man8s-init: network: skipped: no network link"},
		{"no link is fatal when strict", "strict", netinit.ErrNoLink, 1, "failed (MAN8S_NETWORK_CHECK=strict): no network link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeEnv(t, root, map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyCheck: tt.check})
			var log bytes.Buffer
			var got netinit.Settings
			setup := func(_ context.Context, s netinit.Settings, _ netinit.Options) (*netinit.Network, error) {
				got = s
				return nil, tt.err
			}
			if status := Run(t.Context(), Options{Root: root, Log: &log, Network: setup}); status != tt.wantStatus {
				t.Errorf("status %d, want %d\n%s", status, tt.wantStatus, log.String())
			}
			if !strings.Contains(log.String(), tt.want) {
				t.Errorf("log lacks %q:\n%s", tt.want, log.String())
			}
			if got.YggTable != netinit.DefaultYggTable {
				t.Errorf("setup got settings %+v", got)
			}
		})
	}
}

func TestRunWaitTimesOut(t *testing.T) {
	root := t.TempDir()
	writeEnv(t, root, map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyWaitFor: "file://" + filepath.Join(root, "never"), man8env.KeyWaitTimeout: "1"})
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if status := Run(ctx, Options{Root: root, Log: &log}); status != 1 {
		t.Errorf("status %d, want 1\n%s", status, log.String())
	}
	if !strings.Contains(log.String(), "never") {
		t.Errorf("the timeout does not name the unmet target:\n%s", log.String())
	}
}

// Lines of man8env.env that are ignored or mean something else are warned
// about, with their numbers, before the app starts.
func TestRunWarnsAboutEnvLines(t *testing.T) {
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	content := man8env.KeyArgs + "=" + self + "\n" + appEnv + "=" + filepath.Join(root, "out") + "\nexport FOO=1\nno equals\n"
	if err := os.WriteFile(filepath.Join(root, "man8env.env"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if status := Run(t.Context(), Options{Root: root, Log: &log}); status != 0 {
		t.Fatalf("status %d\n%s", status, log.String())
	}
	for _, want := range []string{`line 3: defines a variable named "export FOO"`, "line 4: ignored"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

// A host_network machine has no network of its own: the setup is not
// called (and so no lease renewer or forwarder starts), in both modes,
// and one line says why.
func TestRunHostNetworkSkipsNetwork(t *testing.T) {
	for _, mode := range []string{"supervise", "exec-pid1"} {
		t.Run(mode, func(t *testing.T) {
			root := t.TempDir()
			writeEnv(t, root, map[string]string{man8env.KeyArgs: "/bin/true", man8env.KeyTemplate: man8env.TemplateHostNetwork,
				man8env.KeyInitMode: mode, man8env.KeyExposedPorts: "80/tcp", man8env.KeyCheck: "strict"})
			var log bytes.Buffer
			setup := func(context.Context, netinit.Settings, netinit.Options) (*netinit.Network, error) {
				t.Error("network setup called for a host_network machine")
				return nil, errors.New("called")
			}
			Run(t.Context(), Options{Root: root, Log: &log, Network: setup})
			out := log.String()
			if !strings.Contains(out, "man8s-init: network: skipped: template host_network shares the host's network") {
				t.Errorf("log lacks the skip line:\n%s", out)
			}
			for _, bad := range []string{"man8s-init: forward:", "lease renewer", "man8s-init: check:"} {
				if strings.Contains(out, bad) {
					t.Errorf("log has %q:\n%s", bad, out)
				}
			}
		})
	}
}
