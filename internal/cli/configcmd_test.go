package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/host/config"
)

func TestNewCmdConfigShow(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want ConfigShowOptions
	}{
		{"show", nil, ConfigShowOptions{}},
		{"show --json", []string{"--json"}, ConfigShowOptions{JSON: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got *ConfigShowOptions
			cmd := NewCmdConfigShow(testFactory(t), func(_ context.Context, o *ConfigShowOptions) error { got = o; return nil })
			cmd.SetArgs(append([]string{}, tt.args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(ConfigShowOptions{}, "IO", "Config", "Log", "Getenv")); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if got.IO == nil || got.Config == nil || got.Log == nil || got.Getenv == nil {
				t.Errorf("dependencies missing: %+v", got)
			}
		})
	}
}

// configFile writes content to a temp mbctl.toml and loads it.
func configFile(t *testing.T, content string) (string, func() (config.Config, config.Origin, error)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mbctl.toml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, func() (config.Config, config.Origin, error) { return config.Load(path, true) }
}

func TestConfigShowRun(t *testing.T) {
	path, load := configFile(t, "[network]\nbridge = \"br9\"\n[registries.mirrors]\n\"docker.io\" = [\"https://m.example\"]\n")
	run := func(o ConfigShowOptions) (string, string) {
		t.Helper()
		ios, _, out, errOut := iostreams.Test()
		o.IO, o.Config, o.Log = ios, load, slog.New(slog.DiscardHandler)
		if err := configShowRun(t.Context(), &o); err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String()
	}

	out, errOut := run(ConfigShowOptions{Getenv: func(string) string { return "" }})
	for _, want := range []string{
		"# mbctl configuration, read from " + path + "\n",
		"(" + path + ":2)\nbridge = \"br9\"\n",
		"(" + path + ":4)\nmirrors = { \"docker.io\" = [\"https://m.example\"] }\n",
		"(default)\ncache = \"/var/cache/man8s\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr %q", errOut)
	}

	out, errOut = run(ConfigShowOptions{JSON: true, Getenv: func(k string) string { return map[string]string{"MBCTL_INIT": "/opt/man8s-init"}[k] }})
	var rep struct {
		File    string
		Found   bool
		Values  map[string]map[string]any
		Sources map[string]string
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.File != path || !rep.Found {
		t.Errorf("file %q found %v", rep.File, rep.Found)
	}
	for key, want := range map[string]string{"network.bridge": path + ":2", "registries.mirrors": path + ":4", "paths.cache": "default", "machines.init": "default"} {
		if got := rep.Sources[key]; got != want {
			t.Errorf("sources[%s] = %q, want %q", key, got, want)
		}
	}
	if len(rep.Sources) != 26 || len(rep.Values) != 4 {
		t.Errorf("%d sources in %d sections, want 26 in 4:\n%s", len(rep.Sources), len(rep.Values), out)
	}
	if diff := cmp.Diff(map[string]any{
		"default_template": "network_isolated", "busybox": "/usr/bin/busybox", "init": "",
	}, rep.Values["machines"]); diff != "" {
		t.Errorf("machines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{
		"mirrors": map[string]any{"docker.io": []any{"https://m.example"}}, "insecure": []any{}, "ca_file": "",
		"attempts": float64(5), "header_timeout": "30s", "idle_timeout": "30s",
	}, rep.Values["registries"]); diff != "" {
		t.Errorf("registries (-want +got):\n%s", diff)
	}
	if rep.Values["network"]["bridge"] != "br9" {
		t.Errorf("network.bridge = %v", rep.Values["network"]["bridge"])
	}
	if errOut != "notice: $MBCTL_INIT=/opt/man8s-init overrides machines.init\n" {
		t.Errorf("stderr %q, want a notice that $MBCTL_INIT overrides machines.init", errOut)
	}
}

// machines.init says "(default" once, and names every place an empty value
// is searched, the multi-call mbctl last.
func TestConfigShowInit(t *testing.T) {
	code, out, stderr := runCLI(t, noConfig(t, ""), "config", "show")
	if code != 0 {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	before, _, ok := strings.Cut(out, "\ninit = ")
	if !ok {
		t.Fatalf("no init key:\n%s", out)
	}
	comment := before[strings.LastIndex(before, "\n")+1:]
	if n := strings.Count(comment, "(default"); n != 1 {
		t.Errorf("init comment %q says (default %d times", comment, n)
	}
	if !strings.Contains(comment, "mbctl itself as a multi-call binary") {
		t.Errorf("init comment %q omits the last fallback", comment)
	}
}
