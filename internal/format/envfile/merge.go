package envfile

import (
	"slices"
	"strings"
)

// Merge combines lists of KEY=VALUE assignments (os.Environ's form), a
// later list winning: an assignment that a later list overrides is dropped
// from where it was, and the later one stands where its list puts it.
// man8s-init builds the app's environment with it, and mbctl the
// environment of a command run inside a machine.
func Merge(lists ...[]string) []string {
	var out []string
	for _, over := range lists {
		keys := make(map[string]bool, len(over))
		for _, kv := range over {
			k, _, _ := strings.Cut(kv, "=")
			keys[k] = true
		}
		out = slices.DeleteFunc(out, func(kv string) bool {
			k, _, _ := strings.Cut(kv, "=")
			return keys[k]
		})
		out = append(out, over...)
	}
	return out
}
