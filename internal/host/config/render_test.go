package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/man8s/mbctl/internal/format/man8env"
)

// renderedComment returns the comment line above key in out.
func renderedComment(t *testing.T, out []byte, key string) string {
	t.Helper()
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, key+" = ") && i > 0 {
			return lines[i-1]
		}
	}
	t.Fatalf("no key %s in:\n%s", key, out)
	return ""
}

// machines.init's comment tells the whole search of an empty value, and
// says "default" once: its own wording is no second "(default ...)".
func TestRenderInitComment(t *testing.T) {
	c := renderedComment(t, Render(Default(), Origin{Path: "/etc/man8s/mbctl.toml"}), "init")
	if n := strings.Count(c, "(default"); n != 1 {
		t.Errorf("%q says (default %d times, want once", c, n)
	}
	if !strings.HasSuffix(c, " (default)") {
		t.Errorf("%q does not end with its source", c)
	}
	for _, want := range []string{"$MBCTL_INIT", "beside mbctl", "PREFIX/lib/man8s/man8s-init", "mbctl itself"} {
		if !strings.Contains(c, want) {
			t.Errorf("%q does not mention %s", c, want)
		}
	}
}

// A table set key by key (registries.mirrors) comes from the file, not
// from the defaults.
func TestRenderSourceOfTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbctl.toml")
	if err := os.WriteFile(path, []byte("[registries.mirrors]\n\"docker.io\" = [\"https://m.example\"]\n\"ghcr.io\" = [\"https://g.example\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, origin, err := Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if c := renderedComment(t, Render(cfg, origin), "mirrors"); !strings.HasSuffix(c, "("+path+":2)") {
		t.Errorf("mirrors comment %q, want it to name %s:2", c, path)
	}
	if got := origin.Line("registries.mirrors"); got != 2 {
		t.Errorf("Line(registries.mirrors) = %d, want 2", got)
	}
	if got := origin.Source("registries"); got != path+":2" {
		t.Errorf("Source(registries) = %q", got)
	}
	if got := origin.Source("registries.insecure"); got != "default" {
		t.Errorf("Source(registries.insecure) = %q, want default", got)
	}
}

// Values with control characters render as TOML, not as Go strings.
func TestRenderQuotesLikeTOML(t *testing.T) {
	const file = "[paths]\ncache = \"/c/bell\\u0007/vt\\u000B/del\\u007F/tab\\t/q\\\"/bs\\\\/é\"\n" +
		"[registries.mirrors]\n\"odd\\u0001host\" = [\"https://m.example\"]\n"
	cfg, _, err := Parse("t.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Paths.Cache != "/c/bell\a/vt\v/del\x7f/tab\t/q\"/bs\\/é" {
		t.Fatalf("parsed cache %q", cfg.Paths.Cache)
	}
	out := Render(cfg, Origin{})
	again, _, err := Parse("rendered", out)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, out)
	}
	if diff := cmp.Diff(cfg, again, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		"":                       `""`,
		"/var/lib":               `"/var/lib"`,
		"a\"b\\c":                `"a\"b\\c"`,
		"\a\b\t\n\v\f\r\x1b\x7f": `"\u0007\b\t\n\u000B\f\r\u001B\u007F"`,
		"héllo ☃":                `"héllo ☃"`,
	} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestEntries(t *testing.T) {
	cfg := Default()
	cfg.Registries.Insecure = nil
	cfg.Registries.Mirrors = nil
	entries := Entries(cfg, Origin{})
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Dotted())
		if e.Description == "" || e.Source != "default" {
			t.Errorf("%s: description %q, source %q", e.Dotted(), e.Description, e.Source)
		}
	}
	want := []string{
		"paths.machines", "paths.images", "paths.configs", "paths.storage", "paths.nspawn", "paths.machinectl", "paths.cache", "paths.scratch", "paths.networkd", "paths.sysctl", "paths.systemd_units",
		"network.bridge", "network.ipv4", "network.uplink", "network.ygg_admin", "network.ygg_prefix", "network.ipv6_uplink",
		"machines.default_template", "machines.busybox", "machines.init",
		"registries.mirrors", "registries.insecure", "registries.ca_file",
		"registries.attempts", "registries.header_timeout", "registries.idle_timeout",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	byKey := map[string]any{}
	for _, e := range entries {
		byKey[e.Dotted()] = e.Value
	}
	if v, ok := byKey["registries.insecure"].([]string); !ok || v == nil {
		t.Errorf("insecure = %#v, want an empty, non-nil []string", byKey["registries.insecure"])
	}
	if v, ok := byKey["registries.mirrors"].(map[string][]string); !ok || v == nil {
		t.Errorf("mirrors = %#v, want an empty, non-nil map", byKey["registries.mirrors"])
	}
	if byKey["paths.cache"] != "/var/cache/man8s" {
		t.Errorf("paths.cache = %#v", byKey["paths.cache"])
	}
}

// config show names every template in default_template's comment.
func TestDefaultTemplateListsTemplates(t *testing.T) {
	for _, e := range Entries(Default(), Origin{}) {
		if e.Dotted() != "machines.default_template" {
			continue
		}
		for _, tmpl := range man8env.Templates() {
			if !strings.Contains(e.Description, tmpl) {
				t.Errorf("machines.default_template's comment %q does not name template %s", e.Description, tmpl)
			}
		}
		return
	}
	t.Fatal("no machines.default_template")
}
