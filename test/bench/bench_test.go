package main

import (
	"archive/tar"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAptMirror(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{
			name: "deb822",
			files: map[string]string{"sources.list.d/debian.sources": `Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
# a comment
URIs: http://mirror.example/debian/ http://other.example/debian
Suites: bookworm bookworm-updates
Components: main
`},
			want: "http://mirror.example/debian",
		},
		{
			name: "disabled deb822 stanza",
			files: map[string]string{"sources.list.d/a.sources": `Enabled: no
Types: deb
URIs: http://off.example/debian
Suites: bookworm
`},
			want: defaultMirror,
		},
		{
			name: "one-line list with options",
			files: map[string]string{"sources.list": `# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main
`},
			want: "http://list.example/debian",
		},
		{
			name:  "other suite only",
			files: map[string]string{"sources.list": "deb http://x.example/debian trixie main\n"},
			want:  defaultMirror,
		},
		{
			name: "disabled file name ignored",
			files: map[string]string{
				"sources.list.d/a.list.disabled": "deb http://no.example/debian bookworm main\n",
			},
			want: defaultMirror,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "sources.list.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := aptMirror(dir, "bookworm"); got != tt.want {
				t.Errorf("aptMirror = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTreeStats(t *testing.T) {
	tree := newTreeStats()
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir},
		{Name: "etc/a", Typeflag: tar.TypeReg, Size: 10},
		{Name: "etc/b", Typeflag: tar.TypeLink, Linkname: "etc/a"},
		{Name: "doc/", Typeflag: tar.TypeDir},
		{Name: "doc/x", Typeflag: tar.TypeReg, Size: 100},
		{Name: "doc/sub/", Typeflag: tar.TypeDir},
		{Name: "doc/sub/y", Typeflag: tar.TypeReg, Size: 1000},
		{Name: "misc/", Typeflag: tar.TypeDir},
		{Name: "misc/old", Typeflag: tar.TypeReg, Size: 7},
		// upper layer
		{Name: ".wh.doc", Typeflag: tar.TypeReg},
		{Name: "etc/.wh.a", Typeflag: tar.TypeReg},
		{Name: "misc/.wh..wh..opq", Typeflag: tar.TypeReg},
		{Name: "misc/new", Typeflag: tar.TypeReg, Size: 3},
	} {
		tree.apply(h)
	}
	entries, bytes := tree.totals()
	// etc, etc/b (still holds a's 10 bytes), misc, misc/new
	if entries != 4 || bytes != 13 {
		t.Errorf("totals = %d entries, %d bytes; want 4, 13", entries, bytes)
	}
	if !tree.exists("/etc/b") || tree.exists("/doc/sub/y") || tree.exists("/misc/old") {
		t.Errorf("unexpected tree: %v", tree.nodes)
	}
}

func TestSelectCases(t *testing.T) {
	ids := func(cs []*benchCase) []string {
		var s []string
		for _, c := range cs {
			s = append(s, c.ID)
		}
		return s
	}
	tests := []struct {
		only    string
		want    []string
		wantErr bool
	}{
		{"", []string{"a", "b", "c", "d", "e", "f", "g1", "g2"}, false},
		{"d,a", []string{"a", "d"}, false},
		{"g", []string{"g1", "g2"}, false},
		{" (b) , g2", []string{"b", "g2"}, false},
		{"x", nil, true},
	}
	for _, tt := range tests {
		got, err := selectCases(allCases(), tt.only)
		if (err != nil) != tt.wantErr {
			t.Errorf("selectCases(%q) error = %v", tt.only, err)
			continue
		}
		if diff := cmp.Diff(tt.want, ids(got)); err == nil && diff != "" {
			t.Errorf("selectCases(%q) (-want +got):\n%s", tt.only, diff)
		}
	}
}

func TestRatios(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	zero, two := 0, 2
	byID := map[string]*CaseResult{
		"a": {MedianSeconds: f(12)},
		"b": {MedianSeconds: f(3)},
		"c": {MedianSeconds: f(1), Samples: []Sample{
			{MaxRSSKiB: 100_000, LayerBlobGETs: &zero}, {MaxRSSKiB: 160_000, LayerBlobGETs: &two},
		}},
		"d": {MedianSeconds: f(5.5)},
		"e": {Error: "podman not found"},
		"f": {MedianSeconds: f(11)},
	}
	byID["b"].Samples = []Sample{{MaxRSSKiB: 90_000}}
	got := map[string]string{}
	for _, r := range ratios(byID) {
		got[r.Name[:7]] = r.Verdict
	}
	want := map[string]string{
		"(b)/(d)": "PASS", "(a)/(b)": "PASS", "(e)/(b)": "n/a", "(f)/(b)": "FAIL", "(c)/(b)": "PASS",
		"(c) lay": "FAIL", "mbctl p": "FAIL", "(a)/(d)": "info", "(e)/(d)": "n/a", "(f)/(d)": "info",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
}

func TestSmallHelpers(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	if got := thousands(18034); got != "18,034" {
		t.Errorf("thousands = %q", got)
	}
	if got := thousands(123); got != "123" {
		t.Errorf("thousands = %q", got)
	}
	if got := unescapeMountinfo(`/var/tmp/a\040b`); got != "/var/tmp/a b" {
		t.Errorf("unescapeMountinfo = %q", got)
	}
	if got := versionOf("skopeo version 1.9.3\n"); got != "1.9.3" {
		t.Errorf("versionOf = %q", got)
	}
	if got := versionOf("GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)"); got != "5.2.15(1)-release" {
		t.Errorf("versionOf = %q", got)
	}
	if got := versionOf("gzip 1.12\nCopyright"); got != "1.12" {
		t.Errorf("versionOf = %q", got)
	}
}
