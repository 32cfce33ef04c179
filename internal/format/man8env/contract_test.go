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
	_, err := ParseTemplate("bridge")
	if err == nil || !strings.Contains(err.Error(), "network_isolated") || !strings.Contains(err.Error(), "netns-init") {
		t.Errorf("ParseTemplate(bridge) = %v, want an error listing the templates and aliases", err)
	}
}
