// Package envfile reads and edits man8env.env, the application's
// configuration file of a Man8S machine.
//
// # Format
//
// The file holds one KEY=VALUE assignment per line. A line is split at its
// first '='; everything after it is the value, taken literally: spaces,
// quotes, '$', backslashes and further '=' are part of the value and nothing
// is unquoted or expanded.
//
// Lines end at "\n". A "\r" directly before the "\n" (or at the very end of a
// file that does not end in a newline) is part of the line ending, not of the
// value, so a file saved with Windows line endings means what its author sees.
// The line ending of every line is kept when the file is written again.
//
// A line that is empty, holds only spaces and tabs, or whose first non-blank
// character is '#' is a comment. A line is an assignment when it contains
// '=' and the text before the first '=' is a valid key (see [ValidateKey]).
// Any other line (no '=', or a key with leading whitespace, say) is ignored
// but kept verbatim; [File.IgnoredLines] reports such lines so that callers
// can warn about them.
//
// If a key is assigned more than once the last assignment wins, as if the
// file were sourced by a shell.
//
// Reading never fails because of the content of a file, and a file that ends
// in a newline is written back byte for byte unless it was edited. Writing a
// key or value that could not be read back unchanged is an error.
package envfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/man8s/mbctl/internal/fsutil"
)

// ErrInvalidKey is wrapped by the errors returned for a key that cannot be
// written to an env file.
var ErrInvalidKey = errors.New("invalid key")

// ErrInvalidValue is wrapped by the errors returned for a value that cannot
// be written to an env file.
var ErrInvalidValue = errors.New("invalid value")

type lineKind int

const (
	kindComment lineKind = iota // blank or '#' line
	kindAssign                  // KEY=VALUE
	kindIgnored                 // anything else, kept verbatim
)

// line is one line of the file. text excludes the line ending.
type line struct {
	text  string
	cr    bool // the line ended in "\r\n" (or "\r" at the end of the file)
	kind  lineKind
	key   string // for kindAssign
	value string // for kindAssign
}

// File is the content of an env file: its lines in order, comments and
// ignored lines included. The zero value is an empty file, ready to use.
// A File is not safe for concurrent use.
type File struct {
	lines []line
}

// Parse reads an env file from r. It fails only if reading fails; lines of
// any length are accepted.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading env file: %w", err)
	}
	return parseBytes(data), nil
}

// ReadFile reads and parses the env file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading env file: %w", err)
	}
	return parseBytes(data), nil
}

func parseBytes(data []byte) *File {
	f := &File{}
	s := string(data)
	for len(s) > 0 {
		var text string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			text, s = s[:i], s[i+1:]
		} else {
			text, s = s, ""
		}
		cr := strings.HasSuffix(text, "\r")
		if cr {
			text = text[:len(text)-1]
		}
		f.lines = append(f.lines, classify(text, cr))
	}
	return f
}

func classify(text string, cr bool) line {
	l := line{text: text, cr: cr}
	trimmed := strings.TrimLeft(text, " \t")
	switch {
	case trimmed == "" || trimmed[0] == '#':
		l.kind = kindComment
	default:
		i := strings.IndexByte(text, '=')
		if i > 0 && ValidateKey(text[:i]) == nil {
			l.kind = kindAssign
			l.key, l.value = text[:i], text[i+1:]
		} else {
			l.kind = kindIgnored
		}
	}
	return l
}

// ValidateKey reports whether key can be written as the key of an
// assignment. A key must be non-empty, must not contain '=', a line break
// ("\n" or "\r") or NUL, must not start or end with whitespace and must not
// start with '#'.
//
// Keys of the portable form [A-Za-z_][A-Za-z0-9_]* are recommended (every
// shell can export them) but not required: an image may define other names
// and they are passed on as they are.
func ValidateKey(key string) error {
	var problem string
	switch {
	case key == "":
		problem = "empty"
	case strings.ContainsAny(key, "=\n\r\x00"):
		problem = `contains "=", a line break or NUL`
	case key[0] == '#':
		problem = `starts with "#"`
	case strings.TrimSpace(key) != key:
		problem = "starts or ends with whitespace"
	default:
		return nil
	}
	return fmt.Errorf("key %q: %w: %s", key, ErrInvalidKey, problem)
}

// ValidateValue reports whether value can be written as the value of key.
// A value must not contain a line break ("\n" or "\r") or NUL; anything else
// is kept literally. The error names the key but never shows the value,
// which may be a secret.
func ValidateValue(key, value string) error {
	if strings.ContainsAny(value, "\n\r\x00") {
		return fmt.Errorf("key %q: %w: contains a line break or NUL", key, ErrInvalidValue)
	}
	return nil
}

// Get returns the value of the last assignment of key and whether there is
// one.
func (f *File) Get(key string) (string, bool) {
	if i := f.last(key); i >= 0 {
		return f.lines[i].value, true
	}
	return "", false
}

func (f *File) last(key string) int {
	for i := len(f.lines) - 1; i >= 0; i-- {
		if l := &f.lines[i]; l.kind == kindAssign && l.key == key {
			return i
		}
	}
	return -1
}

// Set assigns value to key. If the key is assigned already, the last
// assignment is rewritten in place (keeping its line ending) and earlier ones
// are left alone; they have no effect. Otherwise the assignment is appended
// at the end of the file.
func (f *File) Set(key, value string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ValidateValue(key, value); err != nil {
		return err
	}
	nl := line{text: key + "=" + value, kind: kindAssign, key: key, value: value}
	if i := f.last(key); i >= 0 {
		nl.cr = f.lines[i].cr
		f.lines[i] = nl
		return nil
	}
	nl.cr = f.usesCRLF()
	f.lines = append(f.lines, nl)
	return nil
}

// usesCRLF reports whether new lines should end in "\r\n": they do when the
// first line of the file does.
func (f *File) usesCRLF() bool {
	return len(f.lines) > 0 && f.lines[0].cr
}

// Delete removes every assignment of key and reports whether there was one.
func (f *File) Delete(key string) bool {
	kept := f.lines[:0]
	for _, l := range f.lines {
		if l.kind == kindAssign && l.key == key {
			continue
		}
		kept = append(kept, l)
	}
	removed := len(kept) != len(f.lines)
	clear(f.lines[len(kept):])
	f.lines = kept
	return removed
}

// Keys returns the distinct assigned keys in the order of their first
// assignment.
func (f *File) Keys() []string {
	var keys []string
	seen := make(map[string]bool)
	for _, l := range f.lines {
		if l.kind == kindAssign && !seen[l.key] {
			seen[l.key] = true
			keys = append(keys, l.key)
		}
	}
	return keys
}

// Map returns every key with the value of its last assignment.
func (f *File) Map() map[string]string {
	m := make(map[string]string)
	for _, l := range f.lines {
		if l.kind == kindAssign {
			m[l.key] = l.value
		}
	}
	return m
}

// Environ returns the assignments as "KEY=VALUE" strings for
// [os/exec.Cmd.Env], one per distinct key in the order of [File.Keys], each
// with the value of its last assignment.
func (f *File) Environ() []string {
	m := f.Map()
	keys := f.Keys()
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+m[k])
	}
	return env
}

// IgnoredLines returns the 1-based numbers of the lines that are neither an
// assignment nor a comment, such as a line without '='. They are kept in the
// file but have no effect.
func (f *File) IgnoredLines() []int {
	var nums []int
	for i, l := range f.lines {
		if l.kind == kindIgnored {
			nums = append(nums, i+1)
		}
	}
	return nums
}

// Bytes returns the file's content. Every line, the last one included, ends
// with its line ending ("\n" unless it was read with "\r\n").
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		b.WriteString(l.text)
		if l.cr {
			b.WriteByte('\r')
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// WriteTo writes the file's content, as returned by [File.Bytes], to w.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(f.Bytes())
	return int64(n), err
}

// WriteFileAtomic replaces the file at path with the content of f: it writes
// a temporary file in the same directory, sets its mode to perm (exactly, the
// umask does not apply), syncs it to disk and renames it over path, so that
// readers see either the old or the new file. If path is a symbolic link, the
// file it points to is replaced and the link is kept.
func WriteFileAtomic(path string, f *File, perm os.FileMode) error {
	if err := fsutil.WriteFileAtomic(path, f.Bytes(), perm); err != nil {
		return fmt.Errorf("writing env file: %w", err)
	}
	return nil
}
