// Package unitfile reads and edits files in systemd's unit-file syntax, as
// used by systemd-nspawn's settings files (.nspawn), without disturbing what
// it does not touch.
//
// # Syntax
//
// The rules follow systemd's configuration parser (src/shared/conf-parser.c):
//
//   - Lines end at "\n", "\r" or NUL, or a combination of them in which no
//     kind repeats ("\r\n", "\n\r", "\r\n\0" ...), exactly as systemd's
//     read_line() counts them. A UTF-8 byte order mark before the first
//     line that is not a comment is ignored.
//   - A line whose first character other than space or tab is '#' or ';' is
//     a comment. There are no comments at the end of a line: in
//     "KillSignal=SIGRTMIN+3 # stop nicely" the value is
//     "SIGRTMIN+3 # stop nicely", which systemd-nspawn rejects.
//   - A line ending in an unescaped backslash continues on the next line:
//     the backslash is replaced by a space and the next line appended.
//     Comment lines between continued lines are skipped and do not end the
//     continuation; a blank line does.
//   - The joined, logical line is stripped of surrounding whitespace. If it
//     starts with '[' it is a section header and must end with ']'; the name
//     between the brackets must not hold control characters, quotes or
//     backslashes. Otherwise it is split at its first '=' into a key and a
//     value, both stripped of surrounding whitespace.
//   - Section names and keys are case-sensitive. A section may appear more
//     than once; all its instances form one logical section.
//
// Parse rejects what systemd rejects (a malformed section header) and, in
// addition, an assignment before the first section header, which systemd
// only ignores with a warning: for a settings file it is always a mistake.
// Lines that systemd ignores with a warning (no '=', no key, invalid UTF-8)
// are kept but have no meaning here either.
//
// An untouched file is written back byte for byte. Edits rewrite only the
// lines of the assignments they change; new lines use the line ending of the
// file's first line ("\n" or "\r\n").
package unitfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/man8s/mbctl/internal/fsutil"
)

// ErrSyntax is wrapped by the errors Parse returns for a malformed file.
var ErrSyntax = errors.New("syntax error")

// ErrInvalid is wrapped by the errors returned for a section name, key or
// value that cannot be written to a unit file.
var ErrInvalid = errors.New("invalid setting")

const (
	whitespace = " \t\n\r" // systemd's WHITESPACE
	bom        = "\xef\xbb\xbf"
)

// physLine is one physical line: its text without the line ending, and the
// line ending as read ("" for a last line without one).
type physLine struct {
	text string
	eol  string
	// skipped marks a comment line inside a continuation: it is part of the
	// entry's bytes but not of its logical line.
	skipped bool
	// bom marks a line whose byte order mark was ignored.
	bom bool
}

type kind int

const (
	kindTrivia  kind = iota // blank or comment line
	kindSection             // [Name]
	kindAssign              // Key=Value
	kindIgnored             // a line systemd ignores with a warning
)

// entry is one logical line: one physical line, or several joined by
// continuations (with the comment lines between them).
type entry struct {
	lines   []physLine
	kind    kind
	section string // kindSection: its name; kindAssign: the section it is in
	key     string // kindAssign
	value   string // kindAssign
	// open marks an entry that ended because the file ended while a
	// continuation was pending.
	open bool
}

// File is a unit file: its logical lines in order, with every byte that was
// read. The zero value is an empty file, ready to use. A File is not safe for
// concurrent use.
type File struct {
	entries []entry
}

// Parse reads a unit file from r. It fails if reading fails or if the file
// is malformed; the error then names the line, counted from 1.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading unit file: %w", err)
	}
	return parse(string(data))
}

// ReadFile reads and parses the unit file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading unit file: %w", err)
	}
	f, err := parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// splitLines splits s into physical lines the way systemd's read_line()
// does.
func splitLines(s string) []physLine {
	var lines []physLine
	for len(s) > 0 {
		i := strings.IndexAny(s, "\n\r\x00")
		if i < 0 {
			lines = append(lines, physLine{text: s})
			break
		}
		j := i
		var seen byte
		for j < len(s) {
			var k byte
			switch s[j] {
			case '\n':
				k = 1
			case '\r':
				k = 2
			case 0:
				k = 4
			}
			if k == 0 || seen&k != 0 {
				break
			}
			seen |= k
			j++
			if k == 4 {
				break // nothing follows a NUL in the same line ending
			}
		}
		lines = append(lines, physLine{text: s[:i], eol: s[i:j]})
		s = s[j:]
	}
	return lines
}

func isComment(text string) bool {
	t := strings.TrimLeft(text, whitespace)
	return t != "" && (t[0] == '#' || t[0] == ';')
}

// endsInBackslash reports whether text ends in an unescaped backslash.
func endsInBackslash(text string) bool {
	n := 0
	for i := len(text) - 1; i >= 0 && text[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

func parse(data string) (*File, error) {
	f := &File{}
	var (
		cur        *entry // the entry being continued, if any
		logical    strings.Builder
		startLine  int
		bomSeen    bool
		section    string
		inSection  bool
		physicalNo int
	)
	finish := func() error {
		e := cur
		cur = nil
		if err := classify(e, logical.String(), &section, &inSection); err != nil {
			return fmt.Errorf("line %d: %w", startLine, err)
		}
		f.entries = append(f.entries, *e)
		return nil
	}
	for _, pl := range splitLines(data) {
		physicalNo++
		if isComment(pl.text) {
			if cur != nil {
				pl.skipped = true
				cur.lines = append(cur.lines, pl)
			} else {
				f.entries = append(f.entries, entry{lines: []physLine{pl}, kind: kindTrivia})
			}
			continue
		}
		text := pl.text
		if !bomSeen && strings.HasPrefix(text, bom) {
			text = text[len(bom):]
			bomSeen = true
			pl.bom = true
		}
		if cur == nil {
			cur = &entry{}
			logical.Reset()
			startLine = physicalNo
		}
		cur.lines = append(cur.lines, pl)
		if endsInBackslash(text) {
			logical.WriteString(text[:len(text)-1])
			logical.WriteByte(' ')
			continue
		}
		logical.WriteString(text)
		if err := finish(); err != nil {
			return nil, err
		}
	}
	if cur != nil {
		cur.open = true
		if err := finish(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// classify gives e its meaning from its logical line l, as systemd's
// parse_line() does, and tracks the current section.
func classify(e *entry, l string, section *string, inSection *bool) error {
	l = strings.Trim(l, whitespace)
	switch {
	case l == "":
		e.kind = kindTrivia
		return nil
	case !utf8.ValidString(l):
		e.kind = kindIgnored
		return nil
	case l[0] == '[':
		if len(l) < 2 || l[len(l)-1] != ']' {
			return fmt.Errorf("%w: invalid section header %q", ErrSyntax, l)
		}
		name := l[1 : len(l)-1]
		if !isSafe(name) {
			return fmt.Errorf("%w: bad characters in section header %q", ErrSyntax, l)
		}
		e.kind = kindSection
		e.section = name
		*section, *inSection = name, true
		return nil
	}
	i := strings.IndexByte(l, '=')
	if i <= 0 {
		e.kind = kindIgnored
		return nil
	}
	key := strings.Trim(l[:i], whitespace)
	if !*inSection {
		return fmt.Errorf("%w: assignment to %q outside of any section", ErrSyntax, key)
	}
	e.kind = kindAssign
	e.section = *section
	e.key = key
	e.value = strings.Trim(l[i+1:], whitespace)
	return nil
}

// isSafe mirrors systemd's string_is_safe(): no control characters, quotes
// or backslashes.
func isSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c == 0x7f || c == '"' || c == '\'' || c == '\\' {
			return false
		}
	}
	return true
}

// ValidateSection reports whether name can be written as a section name: it
// must be non-empty valid UTF-8 without control characters, quotes,
// backslashes or surrounding whitespace.
func ValidateSection(name string) error {
	var problem string
	switch {
	case name == "":
		problem = "empty"
	case !utf8.ValidString(name):
		problem = "not valid UTF-8"
	case !isSafe(name):
		problem = "contains a control character, quote or backslash"
	case strings.Trim(name, whitespace) != name:
		problem = "starts or ends with whitespace"
	default:
		return nil
	}
	return fmt.Errorf("section %q: %w: %s", name, ErrInvalid, problem)
}

// ValidateKey reports whether key can be written as a key. Keys are made of
// ASCII letters, digits, '_', '-' and '.', which covers every systemd
// setting and "X-" extensions.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("key %q: %w: empty", key, ErrInvalid)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("key %q: %w: contains %q", key, ErrInvalid, c)
		}
	}
	return nil
}

// ValidateValue reports whether value can be written as the value of key so
// that systemd reads it back unchanged: it must be valid UTF-8, must not
// contain a line break or NUL, must not start or end with whitespace (which
// systemd strips) and must not end in an unescaped backslash (which would
// continue the line). The error names the key but does not show the value.
func ValidateValue(key, value string) error {
	var problem string
	switch {
	case !utf8.ValidString(value):
		problem = "not valid UTF-8"
	case strings.ContainsAny(value, "\n\r\x00"):
		problem = "contains a line break or NUL"
	case strings.Trim(value, whitespace) != value:
		problem = "starts or ends with whitespace"
	case endsInBackslash(value):
		problem = "ends in a backslash"
	default:
		return nil
	}
	return fmt.Errorf("%s: %w: value %s", key, ErrInvalid, problem)
}

func validate(section, key, value string) error {
	if err := ValidateSection(section); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ValidateValue(key, value); err != nil {
		return fmt.Errorf("[%s] %w", section, err)
	}
	return nil
}

// Sections returns the distinct section names in the order of their first
// header.
func (f *File) Sections() []string {
	var names []string
	seen := make(map[string]bool)
	for _, e := range f.entries {
		if e.kind == kindSection && !seen[e.section] {
			seen[e.section] = true
			names = append(names, e.section)
		}
	}
	return names
}

// Keys returns the distinct keys assigned in section, in the order of their
// first assignment.
func (f *File) Keys(section string) []string {
	var keys []string
	seen := make(map[string]bool)
	for _, e := range f.entries {
		if e.kind == kindAssign && e.section == section && !seen[e.key] {
			seen[e.key] = true
			keys = append(keys, e.key)
		}
	}
	return keys
}

// Get returns the value of the last assignment of key in section, which is
// what systemd uses for a setting that takes a single value, and whether
// there is one. The value may be empty.
func (f *File) Get(section, key string) (string, bool) {
	if i := f.lastAssign(section, key); i >= 0 {
		return f.entries[i].value, true
	}
	return "", false
}

// GetAll returns the values of all assignments of key in section, in order,
// for settings that may be given more than once. Like systemd's list
// settings (Environment=, Parameters=, and most list settings of units), an
// empty assignment clears the list: only the values after the last empty
// assignment are returned.
//
// Note that systemd-nspawn's Bind=, BindReadOnly= and a few others do not
// follow that convention; nspawn ignores an empty assignment of them with a
// warning. Do not write empty assignments of such keys.
func (f *File) GetAll(section, key string) []string {
	var vals []string
	for _, e := range f.entries {
		if e.kind != kindAssign || e.section != section || e.key != key {
			continue
		}
		if e.value == "" {
			vals = nil
			continue
		}
		vals = append(vals, e.value)
	}
	return vals
}

func (f *File) lastAssign(section, key string) int {
	for i := len(f.entries) - 1; i >= 0; i-- {
		if e := &f.entries[i]; e.kind == kindAssign && e.section == section && e.key == key {
			return i
		}
	}
	return -1
}

// Set makes value the value of key in section. If the key is assigned
// already, its last assignment is rewritten in place, keeping the
// indentation and the spacing around '=' of its first line; earlier
// assignments are kept (for a single-valued setting they have no effect; for
// a list use [File.Unset] and [File.Add]). Otherwise the assignment is
// inserted as if by [File.Add].
func (f *File) Set(section, key, value string) error {
	if err := validate(section, key, value); err != nil {
		return err
	}
	i := f.lastAssign(section, key)
	if i < 0 {
		f.insertNew(section, key, value)
		return nil
	}
	old := f.entries[i]
	repl := entry{kind: kindAssign, section: section, key: key, value: value}
	first := old.lines[0]
	// first.eol is "" only for a one-line entry at the end of a file without
	// a final newline; the rewritten line keeps that.
	repl.lines = []physLine{{text: rewritePrefix(first, key) + value, eol: first.eol, bom: first.bom}}
	if value == "" {
		repl.lines[0].text = strings.TrimRight(repl.lines[0].text, " \t")
	}
	f.splice(i, append([]entry{repl}, leftovers(old, true)...)...)
	return nil
}

// rewritePrefix returns the text of a rewritten assignment before its value:
// the original's "  Key = " if its first line holds the key and '=',
// otherwise "Key=".
func rewritePrefix(first physLine, key string) string {
	text := first.text
	lead := ""
	if first.bom {
		lead, text = bom, text[len(bom):]
	}
	i := strings.IndexByte(text, '=')
	if i < 0 || strings.Trim(text[:i], whitespace) != key {
		return lead + key + "="
	}
	j := i + 1
	for j < len(text) && (text[j] == ' ' || text[j] == '\t') {
		j++
	}
	return lead + text[:j]
}

// leftovers returns what of a removed or rewritten entry has to stay: the
// comment lines inside its continuation, a blank line that ended it, and a
// byte order mark that systemd ignored (only the first one is ignored, so
// dropping it would give a later one a meaning). rewritten tells that the
// first line is replaced by a line that keeps its byte order mark.
func leftovers(e entry, rewritten bool) []entry {
	var keep []entry
	for n, pl := range e.lines {
		last := n == len(e.lines)-1
		blank := strings.Trim(pl.text, " \t") == ""
		switch {
		case pl.skipped || (n > 0 && last && blank):
			pl.skipped = false
			keep = append(keep, entry{lines: []physLine{pl}, kind: kindTrivia})
		case pl.bom && !(n == 0 && rewritten):
			keep = append(keep, entry{lines: []physLine{{text: bom, eol: pl.eol, bom: true}}, kind: kindTrivia})
		}
	}
	return keep
}

// Add appends an assignment of key in section: after the last assignment of
// that key in the section, or else after the last assignment in the last
// instance of the section (right after its header if it has none). A missing
// section is created at the end of the file.
func (f *File) Add(section, key, value string) error {
	if err := validate(section, key, value); err != nil {
		return err
	}
	if i := f.lastAssign(section, key); i >= 0 {
		f.insert(i+1, newAssign(section, key, value))
		return nil
	}
	f.insertNew(section, key, value)
	return nil
}

func newAssign(section, key, value string) entry {
	return entry{
		lines:   []physLine{{text: key + "=" + value}},
		kind:    kindAssign,
		section: section,
		key:     key,
		value:   value,
	}
}

// insertNew adds the first assignment of key to section.
func (f *File) insertNew(section, key, value string) {
	header := -1
	for i := len(f.entries) - 1; i >= 0; i-- {
		if e := &f.entries[i]; e.kind == kindSection && e.section == section {
			header = i
			break
		}
	}
	if header < 0 {
		var add []entry
		if n := len(f.entries); n > 0 && !isBlank(f.entries[n-1]) {
			add = append(add, entry{lines: []physLine{{}}, kind: kindTrivia})
		}
		add = append(add,
			entry{lines: []physLine{{text: "[" + section + "]"}}, kind: kindSection, section: section},
			newAssign(section, key, value))
		f.insert(len(f.entries), add...)
		return
	}
	at := header + 1
	for i := header + 1; i < len(f.entries) && f.entries[i].kind != kindSection; i++ {
		if f.entries[i].kind == kindAssign {
			at = i + 1
		}
	}
	f.insert(at, newAssign(section, key, value))
}

func isBlank(e entry) bool {
	return e.kind == kindTrivia && len(e.lines) == 1 && strings.Trim(e.lines[0].text, whitespace) == ""
}

// Unset removes every assignment of key in section and returns how many
// there were. Comment lines inside a removed continuation are kept.
func (f *File) Unset(section, key string) int {
	n := 0
	for i := 0; i < len(f.entries); {
		e := f.entries[i]
		if e.kind != kindAssign || e.section != section || e.key != key {
			i++
			continue
		}
		n++
		keep := leftovers(e, false)
		f.splice(i, keep...)
		i += len(keep)
	}
	return n
}

// UnsetValue removes the assignments of key in section whose value is
// value, for one entry of a list setting (a Bind=, say), and returns how
// many there were. Comment lines inside a removed continuation are kept.
func (f *File) UnsetValue(section, key, value string) int {
	n := 0
	for i := 0; i < len(f.entries); {
		e := f.entries[i]
		if e.kind != kindAssign || e.section != section || e.key != key || e.value != value {
			i++
			continue
		}
		n++
		keep := leftovers(e, false)
		f.splice(i, keep...)
		i += len(keep)
	}
	return n
}

// newline returns the line ending for new lines: that of the first line.
func (f *File) newline() string {
	if len(f.entries) > 0 && f.entries[0].lines[0].eol == "\r\n" {
		return "\r\n"
	}
	return "\n"
}

// insert inserts new entries before index at, giving their lines the file's
// line ending, and makes sure the entry before them is complete.
func (f *File) insert(at int, es ...entry) {
	nl := f.newline()
	for i := range es {
		for j := range es[i].lines {
			es[i].lines[j].eol = nl
		}
	}
	if at > 0 {
		prev := &f.entries[at-1]
		last := &prev.lines[len(prev.lines)-1]
		if last.eol == "" {
			last.eol = nl
		}
		if prev.open {
			// End the pending continuation with a blank line, which does
			// not change its meaning, so the new lines are not joined to it.
			prev.lines = append(prev.lines, physLine{eol: nl})
			prev.open = false
		}
	}
	f.entries = append(f.entries[:at], append(es, f.entries[at:]...)...)
}

// splice replaces the entry at index i with es.
func (f *File) splice(i int, es ...entry) {
	rest := f.entries[i+1:]
	f.entries = append(f.entries[:i:i], append(es, rest...)...)
}

// Bytes returns the file's content.
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, e := range f.entries {
		for _, pl := range e.lines {
			b.WriteString(pl.text)
			b.WriteString(pl.eol)
		}
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
// readers see either the old or the new file. If path is a symbolic link
// (such as /etc/systemd/nspawn/NAME.nspawn), the file it points to is
// replaced and the link is kept.
func WriteFileAtomic(path string, f *File, perm os.FileMode) error {
	if err := fsutil.WriteFileAtomic(path, f.Bytes(), perm); err != nil {
		return fmt.Errorf("writing unit file: %w", err)
	}
	return nil
}
