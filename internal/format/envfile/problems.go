package envfile

import (
	"fmt"
	"strings"
)

// Problem is a line of an env file that does not do what it seems to: it
// is ignored, or it assigns something other than it looks like.
type Problem struct {
	// Line is the 1-based line number.
	Line int `json:"line"`
	// Key is the key the line assigns ("" when it is ignored).
	Key string `json:"key,omitempty"`
	// Why says what the line does and how to write it instead.
	Why string `json:"problem"`
}

func (p Problem) String() string { return fmt.Sprintf("line %d: %s", p.Line, p.Why) }

// Problems lists the lines of f that are ignored (no '=', an empty key, a
// key with a leading blank) or that mean something else than they look
// like: "export FOO=1" defines a variable named "export FOO", and a value
// in quotes keeps its quotes (values are literal). Callers warn with them
// (machines show, machines check, man8s-init's log).
func (f *File) Problems() []Problem {
	var out []Problem
	for i, l := range f.lines {
		n := i + 1
		switch l.kind {
		case kindIgnored:
			out = append(out, Problem{Line: n, Why: ignoredWhy(l.text)})
		case kindAssign:
			if p, ok := assignProblem(l.key, l.value); ok {
				out = append(out, Problem{Line: n, Key: l.key, Why: p})
			}
		}
	}
	return out
}

// ignoredWhy says why a line is ignored. Lines may hold secrets (a value
// pasted without its key, say): only the text before a '=' is quoted.
func ignoredWhy(text string) string {
	i := strings.IndexByte(text, '=')
	switch {
	case i < 0:
		return "ignored: the line has no '=' (write KEY=VALUE)"
	case i == 0:
		return "ignored: the line has an empty key before its '='"
	case strings.TrimLeft(text, " \t") != text:
		return fmt.Sprintf("ignored: the key %q starts with a blank (remove it)", excerpt(text[:i]))
	default:
		return fmt.Sprintf("ignored: %q is not a valid key", excerpt(text[:i]))
	}
}

func assignProblem(key, value string) (string, bool) {
	if w, rest, ok := strings.Cut(key, " "); ok && (w == "export" || w == "declare" || w == "set" || w == "local") {
		return fmt.Sprintf("defines a variable named %q, not %s: this file is not a shell script, write %s=...", key, strings.TrimSpace(rest), strings.TrimSpace(rest)), true
	}
	if strings.ContainsAny(key, " \t") {
		return fmt.Sprintf("the key %q holds a blank: the variable's name is all of it", key), true
	}
	if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		return fmt.Sprintf("the value of %s is in quotes, and the quotes are part of it (values are literal: remove the quotes)", key), true
	}
	return "", false
}

// excerpt shortens a key for a message.
func excerpt(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
