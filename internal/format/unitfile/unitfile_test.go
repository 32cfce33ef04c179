package unitfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t *testing.T, s string) *File {
	t.Helper()
	f, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return f
}

// assignments lists every assignment as "[section] key=value", in order.
func assignments(f *File) []string {
	var out []string
	for _, e := range f.entries {
		if e.kind == kindAssign {
			out = append(out, fmt.Sprintf("[%s] %s=%s", e.section, e.key, e.value))
		}
	}
	return out
}

func TestSplitLines(t *testing.T) {
	tests := []struct {
		in   string
		want []physLine
	}{
		{"", nil},
		{"a", []physLine{{text: "a"}}},
		{"a\nb\n", []physLine{{text: "a", eol: "\n"}, {text: "b", eol: "\n"}}},
		{"a\r\nb", []physLine{{text: "a", eol: "\r\n"}, {text: "b"}}},
		{"a\n\rb", []physLine{{text: "a", eol: "\n\r"}, {text: "b"}}},
		{"a\rb", []physLine{{text: "a", eol: "\r"}, {text: "b"}}},
		{"a\n\nb", []physLine{{text: "a", eol: "\n"}, {text: "", eol: "\n"}, {text: "b"}}},
		{"a\r\n\rb", []physLine{{text: "a", eol: "\r\n"}, {text: "", eol: "\r"}, {text: "b"}}},
		{"a\x00b", []physLine{{text: "a", eol: "\x00"}, {text: "b"}}},
		{"a\r\n\x00\nb", []physLine{{text: "a", eol: "\r\n\x00"}, {text: "", eol: "\n"}, {text: "b"}}},
		{"a\x00\nb", []physLine{{text: "a", eol: "\x00"}, {text: "", eol: "\n"}, {text: "b"}}},
	}
	for _, tt := range tests {
		got := splitLines(tt.in)
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(physLine{})); diff != "" {
			t.Errorf("splitLines(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		sections []string
		want     []string
	}{
		{name: "empty", in: ""},
		{name: "only comments", in: "# a\n; b\n\n   # c\n"},
		{
			name:     "basic",
			in:       "[Exec]\nBoot=no\nParameters=/bin/sh -c 'echo hi'\n\n[Files]\nBind=/a:/b\n",
			sections: []string{"Exec", "Files"},
			want:     []string{"[Exec] Boot=no", "[Exec] Parameters=/bin/sh -c 'echo hi'", "[Files] Bind=/a:/b"},
		},
		{
			name:     "whitespace around keys and values",
			in:       "  [Exec]  \n  Boot =  no \t\n\tKey\t=\t\nA= = b\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] Boot=no", "[Exec] Key=", "[Exec] A== b"},
		},
		{
			name:     "no comments at the end of a line",
			in:       "[Exec]\nKillSignal=SIGRTMIN+3 # stop nicely\nX=a ; b\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] KillSignal=SIGRTMIN+3 # stop nicely", "[Exec] X=a ; b"},
		},
		{
			name:     "continuation",
			in:       "[Exec]\nParameters=a \\\n  b\\\nc\nNext=1\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] Parameters=a    b c", "[Exec] Next=1"},
		},
		{
			name:     "comments inside a continuation are skipped",
			in:       "[Exec]\nA=1 \\\n# comment \\\n  ; other\n2\nB=3\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] A=1  2", "[Exec] B=3"},
		},
		{
			name:     "a blank line ends a continuation",
			in:       "[Exec]\nA=1\\\n\nB=2\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] A=1", "[Exec] B=2"},
		},
		{
			name:     "escaped backslash does not continue",
			in:       "[Exec]\nA=x\\\\\nB=y\\\\\\\nC=z\n",
			sections: []string{"Exec"},
			want:     []string{`[Exec] A=x\\`, `[Exec] B=y\\ C=z`},
		},
		{
			name:     "continuation at end of file",
			in:       "[Exec]\nA=1\\",
			sections: []string{"Exec"},
			want:     []string{"[Exec] A=1"},
		},
		{
			name:     "continued key and header",
			in:       "[Ex\\\nec]\nEnv\\\nironment=x\n",
			sections: []string{"Ex ec"},
			want:     []string{"[Ex ec] Env ironment=x"},
		},
		{
			name:     "CRLF",
			in:       "[Exec]\r\nBoot=no\r\nA=1 \\\r\n2\r\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] Boot=no", "[Exec] A=1  2"},
		},
		{
			name:     "old Mac line endings",
			in:       "[Exec]\rBoot=no\r",
			sections: []string{"Exec"},
			want:     []string{"[Exec] Boot=no"},
		},
		{
			name:     "byte order mark",
			in:       "\xef\xbb\xbf[Exec]\nA=1\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] A=1"},
		},
		{
			name:     "byte order mark after a comment",
			in:       "# c\n\xef\xbb\xbf[Exec]\nA=1\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] A=1"},
		},
		{
			name:     "ignored lines",
			in:       "[Exec]\nno equals sign\n=no key\nA=\xff\nB=2\n",
			sections: []string{"Exec"},
			want:     []string{"[Exec] B=2"},
		},
		{
			name:     "repeated sections and keys",
			in:       "[Files]\nBind=/a\n[Exec]\nBoot=no\n[Files]\nBind=/b\nBind=/c\n",
			sections: []string{"Files", "Exec"},
			want:     []string{"[Files] Bind=/a", "[Exec] Boot=no", "[Files] Bind=/b", "[Files] Bind=/c"},
		},
		{
			name:     "case-sensitive",
			in:       "[exec]\nboot=no\n[Exec]\nBoot=yes\n",
			sections: []string{"exec", "Exec"},
			want:     []string{"[exec] boot=no", "[Exec] Boot=yes"},
		},
		{
			name:     "empty section name and odd names",
			in:       "[]\nA=1\n[a]b]\nB=2\n[ X ]\nC=3\n",
			sections: []string{"", "a]b", " X "},
			want:     []string{"[] A=1", "[a]b] B=2", "[ X ] C=3"},
		},
		{
			name: "garbage before the first section",
			in:   "just words\n[Exec]\n",
			// systemd ignores the line with a warning; so do we.
			sections: []string{"Exec"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			if diff := cmp.Diff(tt.sections, f.Sections()); diff != "" {
				t.Errorf("Sections() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, assignments(f)); diff != "" {
				t.Errorf("assignments mismatch (-want +got):\n%s", diff)
			}
			if got := string(f.Bytes()); got != tt.in {
				t.Errorf("round trip gave %q", got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		line int
		msg  string
	}{
		{"Boot=no\n[Exec]\n", 1, `assignment to "Boot" outside of any section`},
		{"# c\n\n  Key = value\n", 3, `"Key" outside`},
		{"[Exec]\n[Files\n", 2, "invalid section header"},
		{"[Exec] # comment\n", 1, "invalid section header"},
		{"[\n", 1, "invalid section header"},
		{"[Exec]\nA=1\n[Fi\"les]\n", 3, "bad characters"},
		{"[Ex\tec]\n", 1, "bad characters"},
		{"[Exec]\nA=1\\\n\n[Files\n", 4, "invalid section header"},
		{"[Exec]\nA=1\n[Fi\\\nles\n", 3, "invalid section header"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.in))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tt.in)
			continue
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, does not wrap ErrSyntax", tt.in, err)
		}
		if want := fmt.Sprintf("line %d: ", tt.line); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Parse(%q) = %q, want prefix %q", tt.in, err, want)
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", tt.in, err, tt.msg)
		}
	}
}

func TestGet(t *testing.T) {
	f := mustParse(t, `[Exec]
Environment=A=1
Environment=B=2
Boot=yes
Boot=no
Empty=

[Files]
Bind=/a
[Exec]
Environment=
Environment=C=3 D=4
[Files]
Bind=/b
`)
	tests := []struct {
		section, key string
		val          string
		ok           bool
		all          []string
	}{
		{"Exec", "Boot", "no", true, []string{"yes", "no"}},
		{"Exec", "Empty", "", true, nil},
		{"Exec", "Environment", "C=3 D=4", true, []string{"C=3 D=4"}},
		{"Files", "Bind", "/b", true, []string{"/a", "/b"}},
		{"Files", "Boot", "", false, nil},
		{"exec", "Boot", "", false, nil},
		{"Exec", "boot", "", false, nil},
		{"Nope", "X", "", false, nil},
	}
	for _, tt := range tests {
		val, ok := f.Get(tt.section, tt.key)
		if val != tt.val || ok != tt.ok {
			t.Errorf("Get(%q, %q) = %q, %v; want %q, %v", tt.section, tt.key, val, ok, tt.val, tt.ok)
		}
		if diff := cmp.Diff(tt.all, f.GetAll(tt.section, tt.key)); diff != "" {
			t.Errorf("GetAll(%q, %q) mismatch (-want +got):\n%s", tt.section, tt.key, diff)
		}
	}
	if diff := cmp.Diff([]string{"Environment", "Boot", "Empty"}, f.Keys("Exec")); diff != "" {
		t.Errorf("Keys(Exec) mismatch (-want +got):\n%s", diff)
	}
}

func TestEdit(t *testing.T) {
	tests := []struct {
		name string
		in   string
		edit func(*File) error
		want string
	}{
		{
			name: "set replaces the last occurrence in place",
			in:   "[Exec]\n# c\nBoot=yes\nX=1\nBoot=yes\n\n[Files]\n",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "no") },
			want: "[Exec]\n# c\nBoot=yes\nX=1\nBoot=no\n\n[Files]\n",
		},
		{
			name: "set keeps indentation and spacing",
			in:   "[Exec]\n  Boot =  yes   \n",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "no") },
			want: "[Exec]\n  Boot =  no\n",
		},
		{
			name: "set to empty drops the trailing spaces",
			in:   "[Exec]\nBoot = yes\n",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "") },
			want: "[Exec]\nBoot =\n",
		},
		{
			name: "set edits the last of repeated sections",
			in:   "[Files]\nBind=/a\n[Exec]\nBoot=no\n[Files]\nBind=/b\n",
			edit: func(f *File) error { return f.Set("Files", "Bind", "/c") },
			want: "[Files]\nBind=/a\n[Exec]\nBoot=no\n[Files]\nBind=/c\n",
		},
		{
			name: "set of a new key goes after the last key of the section",
			in:   "[Exec]\nBoot=no\n# trailing comment\n\n[Files]\nBind=/a\n",
			edit: func(f *File) error { return f.Set("Exec", "ProcessTwo", "yes") },
			want: "[Exec]\nBoot=no\nProcessTwo=yes\n# trailing comment\n\n[Files]\nBind=/a\n",
		},
		{
			name: "set of a new key in an empty section",
			in:   "[Exec]\n# nothing yet\n[Files]\n",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "no") },
			want: "[Exec]\nBoot=no\n# nothing yet\n[Files]\n",
		},
		{
			name: "set of a new key in the last instance of a section",
			in:   "[Files]\nBind=/a\n[Exec]\n[Files]\n# second\n",
			edit: func(f *File) error { return f.Set("Files", "ReadOnly", "yes") },
			want: "[Files]\nBind=/a\n[Exec]\n[Files]\nReadOnly=yes\n# second\n",
		},
		{
			name: "set creates a missing section",
			in:   "[Exec]\nBoot=no\n",
			edit: func(f *File) error { return f.Set("Network", "Bridge", "br0") },
			want: "[Exec]\nBoot=no\n\n[Network]\nBridge=br0\n",
		},
		{
			name: "set creates a section in an empty file",
			in:   "",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "no") },
			want: "[Exec]\nBoot=no\n",
		},
		{
			name: "no second blank line before a new section",
			in:   "[Exec]\nBoot=no\n\n",
			edit: func(f *File) error { return f.Set("Network", "Bridge", "br0") },
			want: "[Exec]\nBoot=no\n\n[Network]\nBridge=br0\n",
		},
		{
			name: "a missing final newline is added before new lines",
			in:   "[Exec]\nBoot=no",
			edit: func(f *File) error { return f.Set("Exec", "ProcessTwo", "yes") },
			want: "[Exec]\nBoot=no\nProcessTwo=yes\n",
		},
		{
			name: "a line without final newline is rewritten without one",
			in:   "[Exec]\nBoot=no",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "yes") },
			want: "[Exec]\nBoot=yes",
		},
		{
			name: "a pending continuation at the end is closed first",
			in:   "[Exec]\nParameters=a \\",
			edit: func(f *File) error { return f.Add("Exec", "Environment", "A=1") },
			want: "[Exec]\nParameters=a \\\n\nEnvironment=A=1\n",
		},
		{
			name: "set of a continued line keeps its comments",
			in:   "[Exec]\nParameters=a \\\n# why\n  b \\\n; more\n  c\nBoot=no\n",
			edit: func(f *File) error { return f.Set("Exec", "Parameters", "x y") },
			want: "[Exec]\nParameters=x y\n# why\n; more\nBoot=no\n",
		},
		{
			name: "set of a continuation ended by a blank line keeps the blank line",
			in:   "[Exec]\nParameters=a \\\n\n[Files]\n",
			edit: func(f *File) error { return f.Set("Exec", "Parameters", "b") },
			want: "[Exec]\nParameters=b\n\n[Files]\n",
		},
		{
			name: "add after the last occurrence",
			in:   "[Files]\nBind=/a\n# c\nBind=/b\nReadOnly=no\n",
			edit: func(f *File) error { return f.Add("Files", "Bind", "/c") },
			want: "[Files]\nBind=/a\n# c\nBind=/b\nBind=/c\nReadOnly=no\n",
		},
		{
			name: "add to a missing section",
			in:   "# only a comment",
			edit: func(f *File) error { return f.Add("Files", "Bind", "/c") },
			want: "# only a comment\n\n[Files]\nBind=/c\n",
		},
		{
			name: "unset removes all occurrences in all instances",
			in:   "[Files]\nBind=/a\n[Exec]\nBind=/x\n[Files]\n# keep\nBind=/b \\\n# inner\n  :/c\nReadOnly=no\n",
			edit: func(f *File) error {
				if n := f.Unset("Files", "Bind"); n != 2 {
					return fmt.Errorf("Unset = %d, want 2", n)
				}
				if n := f.Unset("Files", "Bind"); n != 0 {
					return fmt.Errorf("second Unset = %d, want 0", n)
				}
				return nil
			},
			want: "[Files]\n[Exec]\nBind=/x\n[Files]\n# keep\n# inner\nReadOnly=no\n",
		},
		{
			name: "CRLF style is kept for new lines",
			in:   "[Exec]\r\nBoot=no\r\n",
			edit: func(f *File) error {
				if err := f.Set("Exec", "Boot", "yes"); err != nil {
					return err
				}
				if err := f.Add("Exec", "Environment", "A=1"); err != nil {
					return err
				}
				return f.Set("Files", "Bind", "/a")
			},
			want: "[Exec]\r\nBoot=yes\r\nEnvironment=A=1\r\n\r\n[Files]\r\nBind=/a\r\n",
		},
		{
			name: "unset keeps an ignored byte order mark",
			in:   "[A]\n\xef\xbb\xbfK=1\n\xef\xbb\xbfL=2\n",
			edit: func(f *File) error { f.Unset("A", "K"); return nil },
			want: "[A]\n\xef\xbb\xbf\n\xef\xbb\xbfL=2\n",
		},
		{
			name: "set keeps an ignored byte order mark inside a continuation",
			in:   "[A]\nK=1\\\n\xef\xbb\xbf2\n\xef\xbb\xbfL=2\n",
			edit: func(f *File) error { return f.Set("A", "K", "3") },
			want: "[A]\nK=3\n\xef\xbb\xbf\n\xef\xbb\xbfL=2\n",
		},
		{
			name: "byte order mark on a rewritten line is kept",
			in:   "[Exec]\n\xef\xbb\xbf Boot = no\n",
			edit: func(f *File) error { return f.Set("Exec", "Boot", "yes") },
			want: "[Exec]\n\xef\xbb\xbf Boot = yes\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			if err := tt.edit(f); err != nil {
				t.Fatal(err)
			}
			got := f.Bytes()
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("content mismatch (-want +got):\n%s", diff)
			}
			// The edited file must read back as the in-memory one.
			g := mustParse(t, string(got))
			if diff := cmp.Diff(assignments(f), assignments(g)); diff != "" {
				t.Errorf("re-parsed assignments differ (-edited +re-parsed):\n%s", diff)
			}
		})
	}
}

func TestEditRejects(t *testing.T) {
	const in = "[Exec]\nBoot=no\n"
	tests := []struct {
		section, key, value string
	}{
		{"", "Boot", "no"},
		{"Ex\"ec", "Boot", "no"},
		{" Exec", "Boot", "no"},
		{"Exec", "", "no"},
		{"Exec", "Bo ot", "no"},
		{"Exec", "Boot=", "no"},
		{"Exec", "#Boot", "no"},
		{"Exec", "Boot", "no\nProcessTwo=yes"},
		{"Exec", "Boot", "no\r"},
		{"Exec", "Boot", "a\x00b"},
		{"Exec", "Boot", " no"},
		{"Exec", "Boot", "no\t"},
		{"Exec", "Boot", `C:\`},
		{"Exec", "Boot", `a\\\`},
		{"Exec", "Boot", "\xff"},
	}
	for _, tt := range tests {
		f := mustParse(t, in)
		for name, op := range map[string]func(string, string, string) error{"Set": f.Set, "Add": f.Add} {
			err := op(tt.section, tt.key, tt.value)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s(%q, %q, %q) = %v, want ErrInvalid", name, tt.section, tt.key, tt.value, err)
			}
		}
		if got := string(f.Bytes()); got != in {
			t.Errorf("rejected edits changed the file to %q", got)
		}
	}
	// The error names the key, never the value.
	err := mustParse(t, in).Set("Exec", "Environment", "PASSWORD=hunter2\n")
	if err == nil || !strings.Contains(err.Error(), "Environment") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error = %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, ok := range []string{"Exec", "X-Man8S", "Files", "a]b", "Ünïcode"} {
		if err := ValidateSection(ok); err != nil {
			t.Errorf("ValidateSection(%q) = %v", ok, err)
		}
	}
	for _, ok := range []string{"Boot", "X-Foo", "Limit_NOFILE", "a.b", "0"} {
		if err := ValidateKey(ok); err != nil {
			t.Errorf("ValidateKey(%q) = %v", ok, err)
		}
	}
	for _, ok := range []string{"", "no", "a  b", `"quoted" 'x'`, `a\\`, `\a`, "a # b", "100%", "Grüße"} {
		if err := ValidateValue("K", ok); err != nil {
			t.Errorf("ValidateValue(%q) = %v", ok, err)
		}
	}
}

func TestZeroValue(t *testing.T) {
	var f File
	if err := f.Add("Exec", "Environment", "A=1"); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Bytes()); got != "[Exec]\nEnvironment=A=1\n" {
		t.Errorf("Bytes() = %q", got)
	}
	if f.Unset("Nope", "X") != 0 {
		t.Error("Unset of a missing key removed something")
	}
}

func TestWriteTo(t *testing.T) {
	const in = "[Exec]\nBoot=no\n"
	var b bytes.Buffer
	n, err := mustParse(t, in).WriteTo(&b)
	if err != nil || n != int64(len(in)) || b.String() != in {
		t.Errorf("WriteTo = %d, %v, %q", n, err, b.String())
	}
}

func TestReadWriteFile(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "container.nspawn")
	link := filepath.Join(dir, "NAME.nspawn")
	data, err := os.ReadFile(filepath.Join("testdata", "bitwarden.nspawn"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set("Network", "Bridge", "srvgrp1"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, f, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symbolic link was replaced")
	}
	g, err := ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := g.Get("Network", "Bridge"); v != "srvgrp1" {
		t.Errorf("Bridge = %q after writing", v)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files left)", len(entries))
	}

	bad := filepath.Join(dir, "bad.nspawn")
	if err := os.WriteFile(bad, []byte("[Exec]\n[Files\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadFile(bad)
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), bad+": line 2:") {
		t.Errorf("ReadFile(bad) = %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v", err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "no", "dir"), f, 0o644); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

func TestUnsetValue(t *testing.T) {
	for _, tt := range []struct {
		name, in, value string
		want            string
		n               int
	}{
		{"one of a list", "[Files]\n# volumes\nBind=/a:/a\nBind=/b:/b\nBind=/c:/c\n", "/b:/b", "[Files]\n# volumes\nBind=/a:/a\nBind=/c:/c\n", 1},
		{"every copy", "[Files]\nBind=/a:/a\nBind=/a:/a\n", "/a:/a", "[Files]\n", 2},
		{"other sections untouched", "[Exec]\nBind=/a:/a\n[Files]\nBind=/a:/a\n", "/a:/a", "[Exec]\nBind=/a:/a\n[Files]\n", 1},
		{"absent", "[Files]\nBind=/a:/a\n", "/z:/z", "[Files]\nBind=/a:/a\n", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			if n := f.UnsetValue("Files", "Bind", tt.value); n != tt.n {
				t.Errorf("removed %d, want %d", n, tt.n)
			}
			if got := string(f.Bytes()); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
