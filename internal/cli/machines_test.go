package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// machineDirs returns a configuration whose machine paths are in a temp
// dir, and that dir.
func machineDirs(t *testing.T) (map[string]string, string) {
	t.Helper()
	root := t.TempDir()
	var b strings.Builder
	b.WriteString("[paths]\n")
	for _, k := range []string{"machines", "configs", "storage", "nspawn", "machinectl", "cache", "scratch"} {
		dir := filepath.Join(root, k)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b.WriteString(k + " = \"" + dir + "\"\n")
	}
	return noConfig(t, b.String()), root
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMachinesListShowRemove(t *testing.T) {
	env, root := machineDirs(t)
	writeTestFile(t, filepath.Join(root, "machines/web/bin/app"), "")
	writeTestFile(t, filepath.Join(root, "configs/web/man8env.env"),
		"MAN8S_OCI_IMAGE_URL=registry.example/web:1\nMAN8S_YGGDRASIL_ADDRESS=300::5\nMAN8S_MBCTL_CREATED_AT=2026-11-28T10:00:00Z\n")
	writeTestFile(t, filepath.Join(root, "configs/web/container.nspawn"), "[Exec]\nParameters=/man8s-init/man8s-init\n")

	code, out, stderr := runCLI(t, env, "machines", "list")
	if code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "stopped (partial)") || !strings.Contains(out, "300::5") {
		t.Errorf("list: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, env, "machines", "list", "--json")
	var infos []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &infos) != nil || len(infos) != 1 || infos[0]["image"] != "registry.example/web:1" {
		t.Errorf("list --json: %d %q", code, out)
	}
	code, out, _ = runCLI(t, env, "machines", "show", "web")
	for _, want := range []string{"State:", "stopped", "Parameters=/man8s-init/man8s-init", "storage dir", "(missing)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show: %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if code, _, stderr = runCLI(t, env, "machines", "show", "nope"); code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("show nope: %d %q", code, stderr)
	}
	// No terminal, no --yes: nothing is deleted.
	code, _, stderr = runCLI(t, env, "machines", "remove", "web")
	if code != 1 || !strings.Contains(stderr, "pass --yes") || !strings.Contains(stderr, "deletes:") {
		t.Errorf("remove without --yes: %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "machines/web")); err != nil {
		t.Fatal("deleted without confirmation")
	}
	code, out, stderr = runCLI(t, env, "machines", "remove", "--yes", "web")
	if code != 0 || !strings.Contains(out, "Removed machine web") || !strings.Contains(stderr, "Already missing:") {
		t.Errorf("remove --yes: %d %q %q", code, out, stderr)
	}
	if code, _, stderr = runCLI(t, env, "machines", "remove", "--yes", "web"); code != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("second remove: %d %q", code, stderr)
	}
}
