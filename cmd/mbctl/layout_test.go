package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The README's Layout table is where a new engineer learns the tree: it
// names every package, so a package added without a row fails here.
func TestReadmeLayoutListsEveryPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const mod = "github.com/man8s/mbctl/"
	for _, pkg := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(pkg, mod)
		if !strings.Contains(string(readme), "`"+rel+"`") {
			t.Errorf("README.md's Layout table has no row naming `%s`", rel)
		}
	}
}
