// Package machine holds what mbctl knows about a single nspawn machine on
// the host: its name, paths and volumes, whether it runs, its effective
// environment, how it is removed, and the nspawn, systemd and nsenter
// command lines that run, control and enter it.
package machine

import (
	"fmt"
	"unicode/utf8"
)

// MaxNameLen is the longest machine name systemd accepts (Linux's
// HOST_NAME_MAX), in bytes.
const MaxNameLen = 64

// allowedChars is the hint appended to every character error.
const allowedChars = "use letters a-z and A-Z, digits, '-' and '.'"

// ValidateName reports whether name can be used as a machine name.
//
// A machine name becomes the machine's hostname, its systemd-machined name,
// the instance of systemd-nspawn@.service and a file name, so it has to pass
// the check systemd-nspawn -M and machinectl apply (systemd's
// hostname_is_valid without flags, verified against systemd 252):
//
//   - 1 to 64 bytes;
//   - only ASCII letters, digits, '-' and '.' (no '_', no spaces, no
//     non-ASCII letters, no '/');
//   - dots separate non-empty parts: no leading or trailing '.', no "..";
//   - no part starts or ends with '-' (so no leading or trailing '-', no
//     "-." or ".-").
//
// The error names the rule that failed and quotes the name.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("invalid machine name \"\": the name is empty (use 1 to %d characters: letters, digits, '-' and '.')", MaxNameLen)
	}
	// prev is the previous byte, or '.' at the start: a name behaves as if
	// it were preceded by a separator.
	prev := byte('.')
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		pos := utf8.RuneCountInString(name[:i]) + 1
		switch {
		case r == utf8.RuneError && size == 1:
			return invalid(name, "byte 0x%02x at position %d is not valid UTF-8 (%s)", name[i], pos, allowedChars)
		case r == '.':
			switch {
			case i == 0:
				return invalid(name, "it must not start with '.'")
			case prev == '.':
				return invalid(name, "\"..\" at position %d: dots must separate non-empty parts", pos-1)
			case prev == '-':
				return invalid(name, "\"-.\" at position %d: a part must not end with '-'", pos-1)
			}
		case r == '-':
			switch {
			case i == 0:
				return invalid(name, "it must not start with '-'")
			case prev == '.':
				return invalid(name, "\".-\" at position %d: a part must not start with '-'", pos-1)
			}
		case isLetterOrDigit(r):
		default:
			return invalid(name, "character %q at position %d is not allowed (%s)", r, pos, allowedChars)
		}
		prev = name[i]
		i += size
	}
	switch prev {
	case '.':
		return invalid(name, "it must not end with '.'")
	case '-':
		return invalid(name, "it must not end with '-'")
	}
	if len(name) > MaxNameLen {
		return invalid(name, "it is %d characters long, at most %d are allowed", len(name), MaxNameLen)
	}
	return nil
}

func isLetterOrDigit(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// maxQuoted is how many bytes of a bad name an error message quotes.
const maxQuoted = 80

// invalid builds the error for a name that broke a rule.
func invalid(name, format string, args ...any) error {
	quoted := name
	if len(quoted) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(quoted[cut]) {
			cut--
		}
		quoted = quoted[:cut] + "..."
	}
	return fmt.Errorf("invalid machine name %q: "+format, append([]any{quoted}, args...)...)
}
