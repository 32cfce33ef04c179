package envfile

import (
	"bytes"
	"errors"
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

// The example from DESIGN.md, plus the odd lines a user might write.
const realWorld = `# written by mbctl
MAN8S_CONTAINER_NAME=TestBWContainer3
MAN8S_CONTAINER_TEMPLATE=network_isolated
MAN8S_YGGDRASIL_ADDRESS=300:2e98:a4b0:1789:1d44:bc13:a177:c4d
MAN8S_OCI_IMAGE_URL=docker.io/vaultwarden/server:latest
MAN8S_APPLICATION_ARGS=/entrypoint.sh

# the image's environment
BW_DB_FILE=/etc/bitwarden/vault.db
globalSettings__baseServiceUri__internalAdmin=http://localhost:5000
QUOTED="a b"   $HOME ' x
EQUALS=a=b=c
EMPTY=
`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		keys    []string
		ignored []int
	}{
		{
			name: "empty",
			in:   "",
			want: map[string]string{},
		},
		{
			name: "real world",
			in:   realWorld,
			want: map[string]string{
				"MAN8S_CONTAINER_NAME":                          "TestBWContainer3",
				"MAN8S_CONTAINER_TEMPLATE":                      "network_isolated",
				"MAN8S_YGGDRASIL_ADDRESS":                       "300:2e98:a4b0:1789:1d44:bc13:a177:c4d",
				"MAN8S_OCI_IMAGE_URL":                           "docker.io/vaultwarden/server:latest",
				"MAN8S_APPLICATION_ARGS":                        "/entrypoint.sh",
				"BW_DB_FILE":                                    "/etc/bitwarden/vault.db",
				"globalSettings__baseServiceUri__internalAdmin": "http://localhost:5000",
				"QUOTED": `"a b"   $HOME ' x`,
				"EQUALS": "a=b=c",
				"EMPTY":  "",
			},
			keys: []string{
				"MAN8S_CONTAINER_NAME", "MAN8S_CONTAINER_TEMPLATE", "MAN8S_YGGDRASIL_ADDRESS",
				"MAN8S_OCI_IMAGE_URL", "MAN8S_APPLICATION_ARGS", "BW_DB_FILE",
				"globalSettings__baseServiceUri__internalAdmin", "QUOTED", "EQUALS", "EMPTY",
			},
		},
		{
			name: "value is literal",
			in:   "A= spaced value \nB='single'\nC=\"double\"\nD=$A ${B} `x`\nE=back\\slash\\\n",
			want: map[string]string{
				"A": " spaced value ",
				"B": "'single'",
				"C": `"double"`,
				"D": "$A ${B} `x`",
				"E": `back\slash\`,
			},
			keys: []string{"A", "B", "C", "D", "E"},
		},
		{
			name: "last assignment wins",
			in:   "A=1\nB=2\nA=3\n",
			want: map[string]string{"A": "3", "B": "2"},
			keys: []string{"A", "B"},
		},
		{
			name: "no newline at end",
			in:   "A=1\nB=2",
			want: map[string]string{"A": "1", "B": "2"},
			keys: []string{"A", "B"},
		},
		{
			name: "CRLF line endings",
			in:   "A=1\r\nB=2\r\nC=3\r",
			want: map[string]string{"A": "1", "B": "2", "C": "3"},
			keys: []string{"A", "B", "C"},
		},
		{
			name: "only one CR belongs to the line ending",
			in:   "A=1\r\r\n",
			want: map[string]string{"A": "1\r"},
			keys: []string{"A"},
		},
		{
			name: "comments and blank lines",
			in:   "#A=1\n  # B=2\n\n \t \n;C=3\n",
			want: map[string]string{";C": "3"},
			keys: []string{";C"},
		},
		{
			name:    "odd lines are ignored",
			in:      "just text\n=value\n A=1\nB =2\nexport C=3\nD=4\n",
			want:    map[string]string{"export C": "3", "D": "4"},
			keys:    []string{"export C", "D"},
			ignored: []int{1, 2, 3, 4},
		},
		{
			name:    "NUL in key makes the line ignored",
			in:      "A\x00B=1\nC=a\x00b\n",
			want:    map[string]string{"C": "a\x00b"},
			keys:    []string{"C"},
			ignored: []int{1},
		},
		{
			name: "unicode and invalid UTF-8 are literal",
			in:   "GRÜSSE=Grüße\nRAW=\xff\xfe\n",
			want: map[string]string{"GRÜSSE": "Grüße", "RAW": "\xff\xfe"},
			keys: []string{"GRÜSSE", "RAW"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			if diff := cmp.Diff(tt.want, f.Map()); diff != "" {
				t.Errorf("Map() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.keys, f.Keys()); diff != "" {
				t.Errorf("Keys() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.ignored, f.IgnoredLines()); diff != "" {
				t.Errorf("IgnoredLines() mismatch (-want +got):\n%s", diff)
			}
			for k, v := range tt.want {
				if got, ok := f.Get(k); !ok || got != v {
					t.Errorf("Get(%q) = %q, %v; want %q, true", k, got, ok, v)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{realWorld, realWorld},
		{"A=1", "A=1\n"},
		{"A=1\r\nB=2\r\n", "A=1\r\nB=2\r\n"},
		{"A=1\r", "A=1\r\n"},
		{"\n\n\n", "\n\n\n"},
		{"garbage\x00\xff\n", "garbage\x00\xff\n"},
		{"mixed\r\nendings\n", "mixed\r\nendings\n"},
		{"A=1\rB=2\n", "A=1\rB=2\n"},
	}
	for _, tt := range tests {
		f := mustParse(t, tt.in)
		if got := string(f.Bytes()); got != tt.want {
			t.Errorf("Parse(%q).Bytes() = %q, want %q", tt.in, got, tt.want)
		}
		var b bytes.Buffer
		n, err := f.WriteTo(&b)
		if err != nil || n != int64(len(tt.want)) || b.String() != tt.want {
			t.Errorf("WriteTo = %d, %v, %q; want %d, nil, %q", n, err, b.String(), len(tt.want), tt.want)
		}
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
			name: "set replaces in place",
			in:   "# c\nA=1\nB=2\n",
			edit: func(f *File) error { return f.Set("A", "new value") },
			want: "# c\nA=new value\nB=2\n",
		},
		{
			name: "set replaces the last duplicate only",
			in:   "A=1\nB=2\nA=3\n",
			edit: func(f *File) error { return f.Set("A", "4") },
			want: "A=1\nB=2\nA=4\n",
		},
		{
			name: "set appends a new key",
			in:   "A=1\n# trailing comment\n",
			edit: func(f *File) error { return f.Set("B", "2") },
			want: "A=1\n# trailing comment\nB=2\n",
		},
		{
			name: "set appends after a missing final newline",
			in:   "A=1",
			edit: func(f *File) error { return f.Set("B", "2") },
			want: "A=1\nB=2\n",
		},
		{
			name: "set to an empty file",
			in:   "",
			edit: func(f *File) error { return f.Set("A", "x=y") },
			want: "A=x=y\n",
		},
		{
			name: "CRLF style is kept",
			in:   "A=1\r\nB=2\r\n",
			edit: func(f *File) error {
				if err := f.Set("A", "9"); err != nil {
					return err
				}
				return f.Set("C", "3")
			},
			want: "A=9\r\nB=2\r\nC=3\r\n",
		},
		{
			name: "set leaves an ignored line with the same prefix alone",
			in:   " A=1\n",
			edit: func(f *File) error { return f.Set("A", "2") },
			want: " A=1\nA=2\n",
		},
		{
			name: "delete removes every assignment",
			in:   "A=1\n# keep\nB=2\nA=3\n",
			edit: func(f *File) error {
				if !f.Delete("A") {
					return errors.New("Delete returned false")
				}
				if f.Delete("A") {
					return errors.New("second Delete returned true")
				}
				return nil
			},
			want: "# keep\nB=2\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			if err := tt.edit(f); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(f.Bytes())); diff != "" {
				t.Errorf("content mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestZeroValue(t *testing.T) {
	var f File
	if err := f.Set("A", "1"); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Bytes()); got != "A=1\n" {
		t.Errorf("Bytes() = %q", got)
	}
}

func TestEnviron(t *testing.T) {
	f := mustParse(t, "B=1\nA=2\n# c\nB=3\nC= x \n")
	want := []string{"B=3", "A=2", "C= x "}
	if diff := cmp.Diff(want, f.Environ()); diff != "" {
		t.Errorf("Environ() mismatch (-want +got):\n%s", diff)
	}
	if got := (&File{}).Environ(); len(got) != 0 {
		t.Errorf("Environ() of an empty file = %q", got)
	}
}

func TestValidate(t *testing.T) {
	keys := []struct {
		key string
		ok  bool
	}{
		{"A", true},
		{"_a1", true},
		{"globalSettings__baseServiceUri__internalAdmin", true},
		{"foo.bar", true},
		{"with space", true},
		{"", false},
		{"A=B", false},
		{"A\nB", false},
		{"A\rB", false},
		{"A\x00", false},
		{"#A", false},
		{" A", false},
		{"A ", false},
		{"A\t", false},
	}
	for _, tt := range keys {
		err := ValidateKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, does not wrap ErrInvalidKey", tt.key, err)
		}
	}
	values := []struct {
		value string
		ok    bool
	}{
		{"", true},
		{" a b ", true},
		{`"$HOME" \ '`, true},
		{"a\nb", false},
		{"a\r", false},
		{"a\x00b", false},
	}
	for _, tt := range values {
		err := ValidateValue("KEY", tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateValue(%q) = %v, want ok=%v", tt.value, err, tt.ok)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("ValidateValue(%q) = %v, does not wrap ErrInvalidValue", tt.value, err)
			}
			if !strings.Contains(err.Error(), `"KEY"`) {
				t.Errorf("ValidateValue error %q does not name the key", err)
			}
		}
	}
}

func TestSetRejects(t *testing.T) {
	f := mustParse(t, "A=1\n")
	const secret = "hunter2\nsecond line"
	err := f.Set("PASSWORD", secret)
	if !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("Set with a newline = %v, want ErrInvalidValue", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %q shows the value", err)
	}
	if err := f.Set("B=C", "1"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Set with '=' in key = %v, want ErrInvalidKey", err)
	}
	if got := string(f.Bytes()); got != "A=1\n" {
		t.Errorf("a rejected Set changed the file to %q", got)
	}
}

// TestSetThenParse checks that whatever Set accepts is read back unchanged.
func TestSetThenParse(t *testing.T) {
	values := []string{
		"", " ", "a b c", `"quoted"`, "'single'", "$HOME", "${X:-y}", "a=b=c", `back\slash\`,
		"#not a comment", "tab\there", "Grüße", "\xff\xfe", "trailing space ", "\t",
	}
	for _, v := range values {
		f := mustParse(t, "# head\nOTHER=1\n")
		if err := f.Set("K", v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
		g := mustParse(t, string(f.Bytes()))
		if got, ok := g.Get("K"); !ok || got != v {
			t.Errorf("after Set(%q): Get = %q, %v", v, got, ok)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "man8env.env")
	f := mustParse(t, realWorld)
	if err := f.Set("NEW", "1"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, f, 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), f.Bytes()) {
		t.Errorf("read back %q, want %q", got.Bytes(), f.Bytes())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}

	// Overwrite an existing file and leave no temporary files behind.
	if err := WriteFileAtomic(path, mustParse(t, "A=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
	if data, _ := os.ReadFile(path); string(data) != "A=1\n" {
		t.Errorf("content = %q", data)
	}
}

func TestWriteFileAtomicSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.env")
	link := filepath.Join(dir, "link.env")
	if err := os.WriteFile(real, []byte("A=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, mustParse(t, "A=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symbolic link was replaced by a regular file")
	}
	if data, _ := os.ReadFile(real); string(data) != "A=2\n" {
		t.Errorf("target content = %q, want %q", data, "A=2\n")
	}

	dangling := filepath.Join(dir, "dangling.env")
	if err := os.Symlink(filepath.Join(dir, "missing", "x"), dangling); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(dangling, mustParse(t, "A=2\n"), 0o600); err == nil {
		t.Errorf("writing through a dangling link succeeded")
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "x.env")
	if err := WriteFileAtomic(path, &File{}, 0o600); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}

func TestLongLine(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	f := mustParse(t, "A="+long+"\nB=2\n")
	if got, _ := f.Get("A"); got != long {
		t.Errorf("long value has length %d, want %d", len(got), len(long))
	}
	if got, _ := f.Get("B"); got != "2" {
		t.Errorf("Get(B) = %q", got)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestParseReadError(t *testing.T) {
	if _, err := Parse(errReader{}); err == nil {
		t.Error("Parse of a failing reader succeeded")
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile of a missing file = %v, want ErrNotExist", err)
	}
}
