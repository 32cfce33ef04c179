package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultKeychain returns the keychain Resolve uses when Options.Keychain
// is nil. It asks, in this order, and takes the first credential found:
//
//  1. the containers auth file named by $REGISTRY_AUTH_FILE (podman,
//     skopeo, buildah);
//  2. go-containerregistry's authn.DefaultKeychain: the docker config.json
//     in $DOCKER_CONFIG or ~/.docker, with its credential helpers
//     (credsStore, credHelpers);
//  3. the containers auth files podman writes by default:
//     $XDG_RUNTIME_DIR/containers/auth.json (without XDG_RUNTIME_DIR:
//     /run/containers/UID/auth.json) and
//     $XDG_CONFIG_HOME/containers/auth.json (default
//     ~/.config/containers/auth.json).
//
// authn.DefaultKeychain alone reads a containers auth file only when no
// docker config.json exists, and does not match podman's "docker.io" keys
// for Docker Hub; the auth file keychains here do. The environment is read
// on every lookup.
func DefaultKeychain() authn.Keychain {
	return authn.NewMultiKeychain(
		authFileKeychain{paths: registryAuthFile},
		authn.DefaultKeychain,
		authFileKeychain{paths: containersAuthFiles},
	)
}

// registryAuthFile returns $REGISTRY_AUTH_FILE, if set.
func registryAuthFile() []string {
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		return []string{p}
	}
	return nil
}

// containersAuthFiles returns the auth files podman reads by default, most
// specific first.
func containersAuthFiles() []string {
	var paths []string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		paths = append(paths, filepath.Join(d, "containers", "auth.json"))
	} else {
		paths = append(paths, fmt.Sprintf("/run/containers/%d/auth.json", os.Getuid()))
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		paths = append(paths, filepath.Join(d, "containers", "auth.json"))
	} else if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	return paths
}

// authFileKeychain reads credentials from containers auth files
// (containers-auth.json(5), the format of docker's config.json "auths").
// Missing files are skipped; the first file with an entry for the target
// wins. Credential helpers named in these files are not run.
type authFileKeychain struct {
	// paths returns the files to read, in order.
	paths func() []string
}

// authFile is the part of a containers auth file the keychain reads.
type authFile struct {
	Auths map[string]authEntry `json:"auths"`
}

// authEntry is one registry's credentials.
type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// Resolve implements authn.Keychain.
func (k authFileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

// ResolveContext implements authn.ContextKeychain.
func (k authFileKeychain) ResolveContext(_ context.Context, target authn.Resource) (authn.Authenticator, error) {
	keys := authKeys(target)
	for _, path := range k.paths() {
		f, err := readAuthFile(path)
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue
		}
		entries := make(map[string]authEntry, len(f.Auths))
		for key, e := range f.Auths {
			nk := normalizeAuthKey(key)
			// An exact key wins over a legacy spelling of the same host.
			if _, dup := entries[nk]; !dup || nk == key {
				entries[nk] = e
			}
		}
		for _, key := range keys {
			e, ok := entries[key]
			if !ok {
				continue
			}
			cfg, err := e.config()
			if err != nil {
				return nil, fmt.Errorf("auth file %s: entry %q: %w", path, key, err)
			}
			if cfg == (authn.AuthConfig{}) {
				continue
			}
			return authn.FromConfig(cfg), nil
		}
	}
	return authn.Anonymous, nil
}

// readAuthFile reads and decodes the auth file at path; it returns nil
// without error when the file does not exist. Errors never quote the
// file's content.
func readAuthFile(path string) (*authFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading auth file: %w", err)
	}
	var f authFile
	if err := json.Unmarshal(b, &f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("auth file %s is not valid JSON (at byte %d); fix or remove it, or log in again", path, se.Offset)
		}
		return nil, fmt.Errorf("auth file %s does not have the containers-auth.json layout ({\"auths\": {...}}); fix or remove it, or log in again", path)
	}
	return &f, nil
}

// config returns the credentials of an entry; "auth" is base64 of
// "USER:PASSWORD".
func (e authEntry) config() (authn.AuthConfig, error) {
	cfg := authn.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return authn.AuthConfig{}, errors.New(`"auth" is not base64 of USER:PASSWORD; log in again`)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return authn.AuthConfig{}, errors.New(`"auth" is not base64 of USER:PASSWORD; log in again`)
		}
		cfg.Username, cfg.Password = user, pass
	}
	return cfg, nil
}

// authKeys returns the auth file keys that may hold credentials for target,
// most specific first: "HOST/NS/REPO", "HOST/NS", "HOST". Docker Hub is
// "docker.io".
func authKeys(target authn.Resource) []string {
	reg := target.RegistryStr()
	host := authHost(reg)
	var keys []string
	if repo, ok := strings.CutPrefix(target.String(), reg+"/"); ok && repo != "" {
		parts := strings.Split(repo, "/")
		for i := len(parts); i > 0; i-- {
			keys = append(keys, host+"/"+strings.Join(parts[:i], "/"))
		}
	}
	return append(keys, host)
}

// normalizeAuthKey turns an auth file key into the form authKeys uses:
// without scheme, without a trailing "/v1/" or "/v2/" API path, Docker Hub
// as "docker.io".
func normalizeAuthKey(key string) string {
	k := strings.ToLower(key)
	hadScheme := false
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(k, scheme); ok {
			k, hadScheme = rest, true
		}
	}
	k = strings.TrimSuffix(k, "/")
	for _, api := range []string{"/v1", "/v2"} {
		k = strings.TrimSuffix(k, api)
	}
	host, path, _ := strings.Cut(k, "/")
	host = authHost(host)
	if hadScheme || path == "" {
		// A key with a scheme is a legacy docker key: host only.
		return host
	}
	return host + "/" + path
}

// authHost maps the Docker Hub host names to "docker.io".
func authHost(host string) string {
	switch host {
	case name.DefaultRegistry, "registry-1.docker.io", dockerHub:
		return dockerHub
	}
	return host
}
