package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/machine"
)

// runCLI runs mbctl with args and an environment of env, and returns the
// exit status and both outputs.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := &Factory{IO: ios, Getenv: func(k string) string { return env[k] }, Prober: noMachinesRun(t)}
	code := run(context.Background(), args, f)
	return code, out.String(), errOut.String()
}

// noMachinesRun is a Prober that sees no running machine: no machined
// state, no processes. The host's real ones would make a test's machine
// "running" whenever anything on the host runs a machine of that name.
func noMachinesRun(t *testing.T) machine.Prober {
	return machine.Prober{MachinedDir: t.TempDir(), Proc: t.TempDir()}
}

// noConfig points MBCTL_CONFIG at a file with only the given content and an
// unreachable yggdrasil, so tests never read the host's configuration.
func noConfig(t *testing.T, extra string) map[string]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mbctl.toml")
	content := "[network]\nygg_admin = \"unix://" + filepath.Join(t.TempDir(), "absent.sock") + "\"\n" + extra
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"MBCTL_CONFIG": path}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"help", []string{"--help"}, 0, ""},
		{"group without verb prints help", []string{"machines"}, 0, ""},
		{"unknown group", []string{"bogus"}, 2, `unknown command "bogus"`},
		{"unknown verb", []string{"address", "bogus"}, 2, `unknown verb "bogus"`},
		{"unknown flag", []string{"address", "getsuffix", "--nope", "x"}, 2, "unknown flag"},
		{"missing argument", []string{"address", "getsuffix"}, 2, "takes 1 argument: NAME"},
		{"invalid name", []string{"address", "getsuffix", "a b"}, 1, `invalid machine name "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, noConfig(t, ""), tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit status = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
			if tt.wantCode != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
				t.Errorf("error output is more than an error line and a hint:\n%s", stderr)
			}
		})
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	root := NewRootCmd(&Factory{IO: ios, Getenv: func(string) string { return "" }})
	cmds := root.Commands()
	for len(cmds) > 0 {
		c := cmds[0]
		cmds = append(cmds[1:], c.Commands()...)
		if c.Short == "" {
			t.Errorf("%s has no short help", c.CommandPath())
		}
		if c.HasSubCommands() && c.Long == "" && c.Name() != "completion" {
			t.Errorf("group %s has no long help", c.CommandPath())
		}
	}
}

func TestAddressGetSuffix(t *testing.T) {
	code, out, stderr := runCLI(t, noConfig(t, ""), "address", "getsuffix", "TestBWContainer3")
	if code != 0 || out != "::1d44:bc13:a177:c4d\n" {
		t.Errorf("got status %d, stdout %q, stderr %q; want ::1d44:bc13:a177:c4d", code, out, stderr)
	}
}

func TestAddressJSON(t *testing.T) {
	tests := []struct {
		name, config string
		args         []string
		want         addressJSON
	}{
		{"suffix without subnet", "", []string{"address", "getsuffix", "--json", "TestBWContainer3"},
			addressJSON{Name: "TestBWContainer3", Suffix: "::1d44:bc13:a177:c4d"}},
		{"suffix with configured subnet", "ygg_prefix = \"300:2e98:a4b0:1789::/64\"\n", []string{"address", "getsuffix", "--json", "TestBWContainer3"},
			addressJSON{Name: "TestBWContainer3", Suffix: "::1d44:bc13:a177:c4d", Address: "300:2e98:a4b0:1789:1d44:bc13:a177:c4d", Subnet: "300:2e98:a4b0:1789::/64", Source: "config"}},
		{"get with configured subnet", "ygg_prefix = \"300:2e98:a4b0:1789::/64\"\n", []string{"address", "get", "--json", "TestBWContainer3"},
			addressJSON{Name: "TestBWContainer3", Suffix: "::1d44:bc13:a177:c4d", Address: "300:2e98:a4b0:1789:1d44:bc13:a177:c4d", Subnet: "300:2e98:a4b0:1789::/64", Source: "config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, noConfig(t, tt.config), tt.args...)
			if code != 0 {
				t.Fatalf("exit status %d: %s", code, stderr)
			}
			var got addressJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// addressJSON mirrors addressReport with plain strings.
type addressJSON struct {
	Name    string `json:"name"`
	Suffix  string `json:"suffix"`
	Address string `json:"address"`
	Subnet  string `json:"subnet"`
	Source  string `json:"subnet_source"`
}

func TestAddressGet(t *testing.T) {
	code, out, stderr := runCLI(t, noConfig(t, "ygg_prefix = \"300:2e98:a4b0:1789::/64\"\n"), "address", "get", "TestBWContainer3")
	if code != 0 || out != "300:2e98:a4b0:1789:1d44:bc13:a177:c4d\n" {
		t.Errorf("got status %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, _, stderr = runCLI(t, noConfig(t, ""), "address", "get", "TestBWContainer3")
	if code != 1 || !strings.Contains(stderr, "is yggdrasil running? or set network.ygg_prefix") {
		t.Errorf("without yggdrasil or ygg_prefix: status %d, stderr %q; want a hint", code, stderr)
	}
}

func TestConfigShow(t *testing.T) {
	env := noConfig(t, "bridge = \"br9\"\n")
	code, out, stderr := runCLI(t, env, "config", "show")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	for _, want := range []string{`bridge = "br9"`, env["MBCTL_CONFIG"] + ":3", `cache = "/var/cache/man8s"`, "(default)"} {
		if !strings.Contains(out, want) {
			t.Errorf("config show output lacks %q:\n%s", want, out)
		}
	}
	code, _, stderr = runCLI(t, map[string]string{"MBCTL_CONFIG": "/nonexistent/mbctl.toml"}, "config", "show")
	if code != 1 || !strings.Contains(stderr, "/nonexistent/mbctl.toml") {
		t.Errorf("named config missing: status %d, stderr %q; want an error naming the file", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "mbctl ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: status %d, output %q", code, out)
	}
}
