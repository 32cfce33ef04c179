package man8env

import (
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	for _, in := range []string{"network_isolated", "netns-init"} {
		if got, err := ParseTemplate(in); err != nil || got != TemplateNetworkIsolated {
			t.Errorf("ParseTemplate(%q) = %q, %v", in, got, err)
		}
	}
	for _, tmpl := range Templates() {
		if got, err := ParseTemplate(tmpl); err != nil || got != tmpl {
			t.Errorf("ParseTemplate(%q) = %q, %v", tmpl, got, err)
		}
		if TemplateSummary(tmpl) == "" {
			t.Errorf("template %s has no summary", tmpl)
		}
	}
	if HasOwnNetwork(TemplateHostNetwork) || !HasOwnNetwork(TemplateMacvlan) || !HasOwnNetwork(TemplateNetworkIsolated) {
		t.Error("HasOwnNetwork: only host_network shares the host's network")
	}
	_, err := ParseTemplate("bridge")
	if err == nil || !strings.Contains(err.Error(), "network_isolated") || !strings.Contains(err.Error(), "netns-init") {
		t.Errorf("ParseTemplate(bridge) = %v, want an error listing the templates and aliases", err)
	}
}

func TestParseAutoUpdate(t *testing.T) {
	for in, want := range map[string]AutoUpdate{"": AutoUpdateOff, " ": AutoUpdateOff, "registry": AutoUpdateRegistry, "registry ": AutoUpdateRegistry} {
		if got, err := ParseAutoUpdate(in); err != nil || got != want {
			t.Errorf("ParseAutoUpdate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"local", "Registry", "yes", "true"} {
		_, err := ParseAutoUpdate(in)
		if err == nil || !strings.Contains(err.Error(), KeyAutoUpdate+"="+in) || !strings.Contains(err.Error(), "want registry") {
			t.Errorf("ParseAutoUpdate(%q) = %v, want an error naming the value and the allowed one", in, err)
		}
	}
}
