package man8env

import (
	"bytes"
	"fmt"
	"strings"
)

// Secrets: values the app needs (passwords, tokens) that stay out of
// man8env.env. mbctl keeps one file per secret in the machine's config dir
// and binds that dir read-only at SecretsPath; man8s-init adds every file
// there to the app's environment, under the file's name.
const (
	// SecretsPath is where a machine's secrets dir is bound inside it.
	SecretsPath = "/run/secrets"
	// MaxSecretSize is the largest secret value, in bytes. Each value
	// becomes an environment variable, and Linux takes at most 128 KiB
	// for one (MAX_ARG_STRLEN), the name included.
	MaxSecretSize = 64 << 10
)

// CheckSecretName returns an error if name cannot name a secret: it must be
// a portable environment variable name ([A-Za-z_][A-Za-z0-9_]*), since the
// app gets the secret under it, and not one of Man8S's own keys (MAN8S_...),
// which are the init's settings and never secret.
func CheckSecretName(name string) error {
	if name == "" {
		return fmt.Errorf("secret name is empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return fmt.Errorf("secret name %q: not an environment variable name (letters, digits and '_', not starting with a digit)", name)
	}
	if strings.HasPrefix(name, "MAN8S_") {
		return fmt.Errorf("secret name %q: MAN8S_ names are Man8S's own settings (set them in man8env.env)", name)
	}
	return nil
}

// CheckSecretValue returns an error if value cannot be a secret's value:
// longer than MaxSecretSize, or holding a NUL byte, which no environment
// variable can hold. The error never shows the value.
func CheckSecretValue(name string, value []byte) error {
	switch {
	case len(value) > MaxSecretSize:
		return fmt.Errorf("secret %s: value of %d bytes is larger than the limit of %d", name, len(value), MaxSecretSize)
	case bytes.IndexByte(value, 0) >= 0:
		return fmt.Errorf("secret %s: value holds a NUL byte, which an environment variable cannot hold", name)
	}
	return nil
}
