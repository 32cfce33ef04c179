package machine

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	max := strings.Repeat("x", MaxNameLen)
	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the error; "" means valid
	}{
		{name: "simple", in: "web"},
		{name: "test vector name", in: "TestBWContainer3"},
		{name: "single letter", in: "a"},
		{name: "single digit", in: "0"},
		{name: "digits only", in: "123"},
		{name: "upper case", in: "ABC"},
		{name: "hyphen inside", in: "my-registry"},
		{name: "double hyphen", in: "a--b"},
		{name: "dotted", in: "a.b.c"},
		{name: "dotted with hyphens", in: "a-b.c-d"},
		{name: "64 chars", in: max},
		{name: "64 chars with dots", in: strings.Repeat("ab.", 21) + "a"},

		{name: "empty", in: "", wantErr: `invalid machine name "": the name is empty`},
		{name: "65 chars", in: max + "x", wantErr: `it is 65 characters long, at most 64 are allowed`},
		{name: "space", in: "a b", wantErr: `invalid machine name "a b": character ' ' at position 2 is not allowed (use letters a-z and A-Z, digits, '-' and '.')`},
		{name: "leading space", in: " a", wantErr: `character ' ' at position 1 is not allowed`},
		{name: "trailing newline", in: "a\n", wantErr: `character '\n' at position 2 is not allowed`},
		{name: "tab", in: "a\tb", wantErr: `character '\t' at position 2`},
		{name: "NUL", in: "a\x00b", wantErr: `character '\x00' at position 2`},
		{name: "underscore", in: "a_b", wantErr: `character '_' at position 2 is not allowed`},
		{name: "slash", in: "a/b", wantErr: `character '/' at position 2 is not allowed`},
		{name: "path traversal", in: "../etc", wantErr: `it must not start with '.'`},
		{name: "only dots", in: "..", wantErr: `it must not start with '.'`},
		{name: "dotdot inside", in: "a..b", wantErr: `invalid machine name "a..b": ".." at position 2: dots must separate non-empty parts`},
		{name: "leading hyphen", in: "-a", wantErr: `invalid machine name "-a": it must not start with '-'`},
		{name: "only hyphen", in: "-", wantErr: `it must not start with '-'`},
		{name: "leading dot", in: ".a", wantErr: `invalid machine name ".a": it must not start with '.'`},
		{name: "dot host", in: ".host", wantErr: `it must not start with '.'`},
		{name: "trailing dot", in: "a.", wantErr: `invalid machine name "a.": it must not end with '.'`},
		{name: "trailing dot fqdn", in: "ab.c.", wantErr: `it must not end with '.'`},
		{name: "trailing hyphen", in: "a-", wantErr: `it must not end with '-'`},
		{name: "hyphen before dot", in: "a-.b", wantErr: `"-." at position 2: a part must not end with '-'`},
		{name: "hyphen after dot", in: "a.-b", wantErr: `".-" at position 2: a part must not start with '-'`},
		{name: "unicode letter", in: "é", wantErr: `character 'é' at position 1 is not allowed`},
		{name: "unicode position counts runes", in: "ééx y", wantErr: `character 'é' at position 1`},
		{name: "cyrillic", in: "сервер", wantErr: `character 'с' at position 1`},
		{name: "emoji", in: "ab😀", wantErr: `character '😀' at position 3`},
		{name: "fullwidth digit", in: "a１", wantErr: `character '１' at position 2`},
		{name: "invalid utf8", in: "ab\xffc", wantErr: `byte 0xff at position 3 is not valid UTF-8`},
		{name: "colon", in: "a:b", wantErr: `character ':' at position 2`},
		{name: "at sign", in: "a@b", wantErr: `character '@' at position 2`},
		{name: "unit escape", in: `a\x2db`, wantErr: `character '\\' at position 2`},
		{name: "overlong quoted name is cut", in: strings.Repeat("y", 200), wantErr: `"` + strings.Repeat("y", maxQuoted) + `...": it is 200 characters long`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateName(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateName(%q) = nil, want error containing %q", tt.in, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateName(%q) = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("ValidateName(%q): error spans lines: %q", tt.in, err)
			}
		})
	}
}

// validReference is an independent, slower statement of the rules the
// fuzz test checks ValidateName against.
func validReference(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || part[0] == '-' || part[len(part)-1] == '-' {
			return false
		}
		for _, c := range []byte(part) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"web", "a.b", "a..b", "-a", ".a", "a.", "a-", "a_b", "é", "a/b", "a b", "\xff", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateName(s)
		if got, want := err == nil, validReference(s); got != want {
			t.Fatalf("ValidateName(%q) = %v, reference says valid=%v", s, err, want)
		}
		if err == nil {
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "invalid machine name \"") {
			t.Fatalf("ValidateName(%q): error %q does not start by quoting the name", s, msg)
		}
		if !utf8.ValidString(msg) {
			t.Fatalf("ValidateName(%q): error %q is not valid UTF-8", s, msg)
		}
		if strings.ContainsAny(msg, "\n\r") {
			t.Fatalf("ValidateName(%q): error %q spans lines", s, msg)
		}
	})
}
