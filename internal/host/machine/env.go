package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/unitfile"
)

// defaultPath is the PATH of a command in a machine whose files set none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Env is the environment a command run inside machine p gets, as the app
// gets it: the settings' Environment= assignments, then man8env.env (later
// ones win, see envfile.Merge), then term as TERM when it is set (the
// terminal is the user's), and a default PATH when none of them sets one.
// Missing files contribute nothing.
func Env(p Paths, term string) ([]string, error) {
	var settings []string
	if s, err := unitfile.ReadFile(p.Settings); err == nil {
		for _, line := range s.GetAll("Exec", "Environment") {
			assigns, err := unitfile.ParseEnvironment(line)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Settings, err)
			}
			settings = append(settings, assigns...)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var env []string
	if e, err := envfile.ReadFile(p.Env); err == nil {
		env = e.Environ()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var user []string
	if term != "" {
		user = []string{"TERM=" + term}
	}
	out := envfile.Merge(settings, env, user)
	if slices.ContainsFunc(out, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		return out, nil
	}
	return append(out, defaultPath), nil
}
