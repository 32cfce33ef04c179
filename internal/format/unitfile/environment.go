package unitfile

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The value of Environment= in a .nspawn file is split into words the way
// systemd-nspawn's settings parser does (config_parse_strv(), which calls
// extract_first_word() with EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE):
//
//   - words are separated by runs of space, tab, "\n" and "\r";
//   - a single or double quote anywhere in a word starts a quoted part that
//     ends at the next identical quote; separators inside it are kept and
//     the quotes are removed, so "A=x y" and A="x y" and A='x'" y" are the
//     same word;
//   - a backslash has no special meaning, inside quotes or out, so there is
//     no way to escape a quote inside quotes of the same kind;
//   - a quote that is not closed makes the whole value invalid.
//
// Neither specifiers ("%n", "%%") nor variables ("$X", "${X}") are expanded
// in .nspawn files, so '%' and '$' are literal. This differs from
// Environment= in service units, which expands specifiers and C escapes:
// the helpers here are for .nspawn files only.

// ParseEnvironment splits the value of an Environment= assignment of a
// .nspawn file into its KEY=VALUE assignments. It fails on an unclosed quote
// and on a word that is not an assignment with a non-empty key; the error
// counts words from 1 and never shows a value.
func ParseEnvironment(value string) ([]string, error) {
	var words []string
	s := value
	for n := 1; ; n++ {
		s = strings.TrimLeft(s, whitespace)
		if s == "" {
			return words, nil
		}
		var (
			b     strings.Builder
			quote byte
			i     int
		)
	word:
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case quote != 0 && c == quote:
				quote = 0
			case quote != 0:
				b.WriteByte(c)
			case c == '"' || c == '\'':
				quote = c
			case strings.IndexByte(whitespace, c) >= 0:
				break word
			default:
				b.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("environment word %d: unclosed %c quote", n, quote)
		}
		w := b.String()
		if k, _, ok := strings.Cut(w, "="); !ok || k == "" {
			return nil, fmt.Errorf("environment word %d: not a KEY=VALUE assignment", n)
		}
		words = append(words, w)
		s = s[i:]
	}
}

// QuoteEnvironment returns a word for an Environment= assignment of a
// .nspawn file that systemd-nspawn reads back as exactly key=value, for use
// as the value of [File.Add] or [File.Set]. A word that needs no quoting is
// returned as it is ("PATH=/usr/bin"); any other is put in double quotes,
// in which each double quote of the word becomes "'"'" (end the
// double-quoted part, a double quote in single quotes, start a new
// double-quoted part), since a backslash escapes nothing in a .nspawn file:
// KEY=say "hi" becomes "KEY=say "'"'"hi"'"'"".
//
// The key must be non-empty and must not contain '='; key and value must be
// valid UTF-8 without line breaks or NUL (systemd ends a line at each of
// them). The error names the key but never shows the value.
func QuoteEnvironment(key, value string) (string, error) {
	var problem string
	switch {
	case key == "":
		problem = "empty key"
	case strings.Contains(key, "="):
		problem = `key contains "="`
	case !utf8.ValidString(key) || strings.ContainsAny(key, "\n\r\x00"):
		problem = "key is not valid UTF-8 or contains a line break or NUL"
	case !utf8.ValidString(value):
		problem = "value is not valid UTF-8"
	case strings.ContainsAny(value, "\n\r\x00"):
		problem = "value contains a line break or NUL"
	}
	if problem != "" {
		return "", fmt.Errorf("environment variable %q: %w: %s", key, ErrInvalid, problem)
	}
	w := key + "=" + value
	if !strings.ContainsAny(w, " \t\"'\\") {
		return w, nil
	}
	return `"` + strings.ReplaceAll(w, `"`, `"'"'"`) + `"`, nil
}
