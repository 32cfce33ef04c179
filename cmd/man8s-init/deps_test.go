package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The init is copied into every machine and runs inside it: it must stay
// small and cannot grow a registry client or the host's machinery by
// accident. Its dependencies are the guest and format sides, fsutil and
// buildinfo, never host, image or cli.
func TestInitLinksOnlyGuestAndFormat(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const mod = "github.com/man8s/mbctl/internal/"
	for _, pkg := range strings.Fields(string(out)) {
		rest, ok := strings.CutPrefix(pkg, mod)
		if !ok {
			continue
		}
		side, _, _ := strings.Cut(rest, "/")
		switch side {
		case "guest", "format", "fsutil", "buildinfo":
		default:
			t.Errorf("man8s-init links %s (the %s side): the init may only use internal/guest, internal/format, internal/fsutil and internal/buildinfo", pkg, side)
		}
	}
}
