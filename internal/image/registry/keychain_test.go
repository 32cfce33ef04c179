package registry

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestAuthKeys(t *testing.T) {
	tests := []struct {
		target string
		want   []string
	}{
		{"index.docker.io/library/registry", []string{"docker.io/library/registry", "docker.io/library", "docker.io"}},
		{"quay.io/a/b/c", []string{"quay.io/a/b/c", "quay.io/a/b", "quay.io/a", "quay.io"}},
		{"127.0.0.1:5000/app", []string{"127.0.0.1:5000/app", "127.0.0.1:5000"}},
	}
	for _, tt := range tests {
		repo, err := name.NewRepository(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, authKeys(repo)); diff != "" {
			t.Errorf("authKeys(%s) (-want +got):\n%s", tt.target, diff)
		}
	}
	reg, _ := name.NewRegistry("ghcr.io")
	if diff := cmp.Diff([]string{"ghcr.io"}, authKeys(reg)); diff != "" {
		t.Errorf("authKeys(registry) (-want +got):\n%s", diff)
	}
}

func TestNormalizeAuthKey(t *testing.T) {
	for in, want := range map[string]string{
		"https://index.docker.io/v1/":   "docker.io",
		"index.docker.io":               "docker.io",
		"registry-1.docker.io":          "docker.io",
		"docker.io/library/alpine":      "docker.io/library/alpine",
		"Quay.IO":                       "quay.io",
		"http://127.0.0.1:5000":         "127.0.0.1:5000",
		"https://ghcr.io/v2/":           "ghcr.io",
		"https://ghcr.io/owner/project": "ghcr.io",
		"ghcr.io/owner/":                "ghcr.io/owner",
	} {
		if got := normalizeAuthKey(in); got != want {
			t.Errorf("normalizeAuthKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// writeAuthFile writes a containers auth file with the given key → user:password entries.
func writeAuthFile(t *testing.T, path string, entries map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"auths": {`)
	first := true
	for k, up := range entries {
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString(`"` + k + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(up)) + `"}`)
	}
	b.WriteString("}}")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func basicOf(t *testing.T, a authn.Authenticator) string {
	t.Helper()
	if a == authn.Anonymous {
		return "anonymous"
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Username + ":" + cfg.Password
}

func TestAuthFileKeychain(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first.json")
	second := filepath.Join(dir, "second.json")
	writeAuthFile(t, first, map[string]string{
		"docker.io":                   "hub:one",
		"quay.io/team/special":        "special:two",
		"https://index.docker.io/v1/": "legacy:ignored",
	})
	writeAuthFile(t, second, map[string]string{
		"quay.io":             "quay:three",
		"http://example.com/": "ex:four",
		"docker.io":           "hub:second-file",
	})
	kc := authFileKeychain{paths: func() []string { return []string{filepath.Join(dir, "missing.json"), first, second} }}
	tests := []struct{ target, want string }{
		{"index.docker.io/library/alpine", "hub:one"},
		{"quay.io/team/special", "special:two"},
		{"quay.io/team/special/sub", "special:two"},
		{"quay.io/team/other", "quay:three"},
		{"example.com/x", "ex:four"},
		{"ghcr.io/x", "anonymous"},
	}
	for _, tt := range tests {
		repo, err := name.NewRepository(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		a, err := kc.Resolve(repo)
		if err != nil {
			t.Fatal(err)
		}
		if got := basicOf(t, a); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.target, got, tt.want)
		}
	}
}

func TestAuthFileKeychainErrors(t *testing.T) {
	dir := t.TempDir()
	repo, _ := name.NewRepository("quay.io/x")
	secret := "s3cr3t-pa55"
	tests := []struct{ content, want string }{
		{`{"auths": {"quay.io": {"auth": "` + secret + `"}}}`, "not base64"},
		{`{"auths": {"quay.io": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(secret)) + `"}}}`, "not base64 of USER:PASSWORD"},
		{`{"auths": {"quay.io": {"auth": "` + secret, "not valid JSON"},
		{`{"auths": ["` + secret + `"]}`, "layout"},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, "auth.json")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := authFileKeychain{paths: func() []string { return []string{p} }}.Resolve(repo)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("case %d: error %v, want %q", i, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "czNjcjN0") {
			t.Errorf("case %d: error leaks the secret: %v", i, err)
		}
	}
}

func TestDefaultKeychainPrecedence(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(home, "run"))
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, "docker"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	repo, _ := name.NewRepository("index.docker.io/library/alpine")
	resolve := func() string {
		t.Helper()
		a, err := DefaultKeychain().Resolve(repo)
		if err != nil {
			t.Fatal(err)
		}
		return basicOf(t, a)
	}

	if got := resolve(); got != "anonymous" {
		t.Fatalf("no files: %s", got)
	}
	// podman's default file; a docker config.json without the entry does not hide it.
	writeAuthFile(t, filepath.Join(home, "config", "containers", "auth.json"), map[string]string{"docker.io": "podman:cfg"})
	writeAuthFile(t, filepath.Join(home, "docker", "config.json"), map[string]string{"https://index.docker.io/v1/": "docker:cfg"})
	if got := resolve(); got != "docker:cfg" {
		t.Errorf("docker config.json: %s", got)
	}
	writeAuthFile(t, filepath.Join(home, "docker", "config.json"), map[string]string{"quay.io": "other:x"})
	if got := resolve(); got != "podman:cfg" {
		t.Errorf("containers auth.json behind a docker config.json: %s", got)
	}
	writeAuthFile(t, filepath.Join(home, "run", "containers", "auth.json"), map[string]string{"docker.io": "podman:run"})
	if got := resolve(); got != "podman:run" {
		t.Errorf("XDG_RUNTIME_DIR auth.json: %s", got)
	}
	// REGISTRY_AUTH_FILE wins over everything.
	explicit := filepath.Join(home, "explicit.json")
	writeAuthFile(t, explicit, map[string]string{"docker.io/library/alpine": "explicit:x"})
	t.Setenv("REGISTRY_AUTH_FILE", explicit)
	writeAuthFile(t, filepath.Join(home, "docker", "config.json"), map[string]string{"https://index.docker.io/v1/": "docker:cfg"})
	if got := resolve(); got != "explicit:x" {
		t.Errorf("REGISTRY_AUTH_FILE: %s", got)
	}
}
