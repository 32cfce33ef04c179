package machinefiles

import (
	"fmt"
	"slices"
	"strings"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/unitfile"
)

// A merge takes a machine's files to a new image without losing an edit:
// base is what mbctl generated for the old image (kept in the config dir,
// see BaseDir), user is the file as it is now, next what mbctl generates
// for the new image. Per key: untouched by the user (user == base) takes
// next's value (or goes, when next drops it); touched keeps the user's
// value. Comments and order are the user's; new keys are added where
// the editors add them. This is a three-way merge like git's, per key
// instead of per line, because both files are key-value lists.

// Change is one key a merge changed, or kept against the image.
type Change struct {
	// File is "settings" or "env".
	File string `json:"file"`
	// Key is "MAN8S_APPLICATION_ARGS", or "[Exec] KillSignal" for settings.
	Key    string `json:"key"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Action string `json:"action"`
}

// Change actions.
const (
	ActionSet  = "set"  // the image changed the value, the user had not
	ActionAdd  = "add"  // new in the image
	ActionDrop = "drop" // the image dropped it, the user had not changed it
	ActionKeep = "keep" // the image changed it, and so had the user: the user's value stays
)

func (c Change) String() string {
	switch c.Action {
	case ActionSet:
		return fmt.Sprintf("%s %s: %q -> %q (the image changed it)", c.File, c.Key, c.From, c.To)
	case ActionAdd:
		return fmt.Sprintf("%s %s: added %q (new in the image)", c.File, c.Key, c.To)
	case ActionDrop:
		return fmt.Sprintf("%s %s: removed %q (the image dropped it)", c.File, c.Key, c.From)
	default:
		return fmt.Sprintf("%s %s: kept your %q (the image now says %q)", c.File, c.Key, c.From, c.To)
	}
}

// MergeEnv merges next into user (see above) and returns what changed.
// The keys in always take next's value even when the user changed them
// (the image digest and mbctl's version describe the rootfs, not a
// choice).
func MergeEnv(base, user, next *envfile.File, always ...string) ([]Change, error) {
	var out []Change
	keys := next.Keys()
	for _, k := range base.Keys() {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		b, bok := base.Get(k)
		u, uok := user.Get(k)
		n, nok := next.Get(k)
		untouched := bok == uok && b == u
		if !untouched && !slices.Contains(always, k) {
			if nok != bok || n != b {
				out = append(out, Change{File: "env", Key: k, From: u, To: n, Action: ActionKeep})
			}
			continue
		}
		switch {
		case nok && !uok:
			if err := user.Set(k, n); err != nil {
				return nil, err
			}
			out = append(out, Change{File: "env", Key: k, To: n, Action: ActionAdd})
		case nok && u != n:
			if err := user.Set(k, n); err != nil {
				return nil, err
			}
			out = append(out, Change{File: "env", Key: k, From: u, To: n, Action: ActionSet})
		case !nok && uok:
			user.Delete(k)
			out = append(out, Change{File: "env", Key: k, From: u, Action: ActionDrop})
		}
	}
	return out, nil
}

// listKeys are the settings that may be given more than once and are
// merged by value: Environment= per variable, binds by set (a bind the
// image no longer declares stays: it holds the machine's data), published
// ports by set (the user's: mbctl never removes one in a merge).
var listKeys = map[[2]string]bool{
	{"Exec", "Environment"}: true,
	{"Files", "Bind"}:       true, {"Files", "BindReadOnly"}: true,
	{"Network", "Port"}: true,
}

// MergeSettings merges next into user (see above) and returns what
// changed.
func MergeSettings(base, user, next *unitfile.File) ([]Change, error) {
	var out []Change
	for _, sk := range settingsKeys(next, base) {
		section, key := sk[0], sk[1]
		name := "[" + section + "] " + key
		if key == "Environment" && section == "Exec" {
			c, err := mergeEnvironment(base, user, next)
			if err != nil {
				return nil, err
			}
			out = append(out, c...)
			continue
		}
		if listKeys[sk] {
			have := user.GetAll(section, key)
			old := base.GetAll(section, key)
			for _, v := range next.GetAll(section, key) {
				if slices.Contains(have, v) || slices.Contains(old, v) {
					continue
				}
				if err := user.Add(section, key, v); err != nil {
					return nil, err
				}
				out = append(out, Change{File: "settings", Key: name, To: v, Action: ActionAdd})
			}
			continue
		}
		b, bok := base.Get(section, key)
		u, uok := user.Get(section, key)
		n, nok := next.Get(section, key)
		if !(bok == uok && b == u) {
			if nok != bok || n != b {
				out = append(out, Change{File: "settings", Key: name, From: u, To: n, Action: ActionKeep})
			}
			continue
		}
		switch {
		case nok && (!uok || u != n):
			if err := user.Set(section, key, n); err != nil {
				return nil, err
			}
			c := Change{File: "settings", Key: name, From: u, To: n, Action: ActionSet}
			if !uok {
				c.Action = ActionAdd
			}
			out = append(out, c)
		case !nok && uok:
			user.Unset(section, key)
			out = append(out, Change{File: "settings", Key: name, From: u, Action: ActionDrop})
		}
	}
	return out, nil
}

// settingsKeys lists the (section, key) pairs of the files, in order of
// first appearance.
func settingsKeys(files ...*unitfile.File) [][2]string {
	var out [][2]string
	for _, f := range files {
		for _, s := range f.Sections() {
			for _, k := range f.Keys(s) {
				if sk := [2]string{s, k}; !slices.Contains(out, sk) {
					out = append(out, sk)
				}
			}
		}
	}
	return out
}

// environment maps each variable of a file's Environment= lines to its
// value and to the line that sets it last.
type environment struct {
	value map[string]string
	line  map[string]string
	order []string
}

func readEnvironment(f *unitfile.File) (environment, error) {
	e := environment{value: map[string]string{}, line: map[string]string{}}
	for _, l := range f.GetAll("Exec", "Environment") {
		assigns, err := unitfile.ParseEnvironment(l)
		if err != nil {
			return e, err
		}
		for _, kv := range assigns {
			k, v, _ := strings.Cut(kv, "=")
			if _, seen := e.value[k]; !seen {
				e.order = append(e.order, k)
			}
			e.value[k], e.line[k] = v, l
		}
	}
	return e, nil
}

// mergeEnvironment merges the settings' Environment= per variable. mbctl
// writes one variable per line; a variable the user moved into a line of
// several is changed by adding a line after it (the last one wins).
func mergeEnvironment(base, user, next *unitfile.File) ([]Change, error) {
	var envs [3]environment
	for i, f := range []*unitfile.File{base, user, next} {
		var err error
		if envs[i], err = readEnvironment(f); err != nil {
			return nil, fmt.Errorf("Environment=: %w", err)
		}
	}
	b, u, n := envs[0], envs[1], envs[2]
	names := slices.Clone(n.order)
	for _, k := range b.order {
		if !slices.Contains(names, k) {
			names = append(names, k)
		}
	}
	var out []Change
	for _, k := range names {
		bv, bok := b.value[k]
		uv, uok := u.value[k]
		nv, nok := n.value[k]
		key := "[Exec] Environment " + k
		if !(bok == uok && bv == uv) {
			if nok != bok || nv != bv {
				out = append(out, Change{File: "settings", Key: key, From: uv, To: nv, Action: ActionKeep})
			}
			continue
		}
		if nok == uok && nv == uv {
			continue
		}
		// The user's line for k is mbctl's own (one variable) when it
		// is the base's line: replace it, else add after it.
		own := uok && u.line[k] == b.line[k]
		if !nok && !own {
			// Dropping it would drop the user's other variables too.
			out = append(out, Change{File: "settings", Key: key, From: uv, Action: ActionKeep})
			continue
		}
		if own {
			user.UnsetValue("Exec", "Environment", u.line[k])
		}
		c := Change{File: "settings", Key: key, From: uv, To: nv, Action: ActionSet}
		switch {
		case !nok:
			c.Action = ActionDrop
		case !uok:
			c.Action = ActionAdd
		}
		if nok {
			if err := user.Add("Exec", "Environment", n.line[k]); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, nil
}
