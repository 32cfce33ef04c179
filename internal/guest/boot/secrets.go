package boot

import (
	"path/filepath"
	"strings"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/guest/secrets"
)

// appSecrets is the secrets step: it reads the machine's secrets, bound by
// mbctl at /run/secrets, as assignments for the app's environment. A
// secret overrides a variable of the same name in man8env.env (the point
// of a secret is to keep the value out of that file, so a value left there
// is the stale one). The step line names the secrets, never their values;
// a machine without secrets logs nothing. It returns false when the
// machine must not start: a secrets dir that cannot be read would start
// the app without a value it was given.
func appSecrets(opts Options, fileVars map[string]string, step func(string, string, ...any)) ([]string, bool) {
	dir := filepath.Join(opts.Root, man8env.SecretsPath)
	env, err := secrets.Read(dir, stepLogger(opts.Log, "secrets"))
	if err != nil {
		step("secrets", "%v", err)
		return nil, false
	}
	if len(env) == 0 {
		return nil, true
	}
	names := make([]string, len(env))
	var over []string
	for i, kv := range env {
		names[i], _, _ = strings.Cut(kv, "=")
		if _, ok := fileVars[names[i]]; ok {
			over = append(over, names[i])
		}
	}
	step("secrets", "%d added to the app's environment from %s: %s", len(names), man8env.SecretsPath, strings.Join(names, " "))
	if len(over) > 0 {
		step("secrets", "override man8env.env's value of: %s", strings.Join(over, " "))
	}
	return env, true
}
