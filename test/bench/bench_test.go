package main

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
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
		{"", []string{"a", "b", "c", "d", "e", "f", "u1", "u2", "u3", "u5", "u4", "p0", "p1", "g1", "g2", "s0", "s1", "s2", "s3", "s4"}, false},
		{"s", []string{"s0", "s1", "s2", "s3", "s4"}, false},
		{"u", []string{"u1", "u2", "u3", "u5", "u4"}, false},
		{"p", []string{"p0", "p1"}, false},
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
	one := 1
	byID["u1"] = &CaseResult{MedianSeconds: f(2), Samples: []Sample{{LayerBlobGETs: &one}, {LayerBlobGETs: &one}}}
	byID["u2"] = &CaseResult{MedianSeconds: f(2.5)}
	byID["u3"] = &CaseResult{MedianSeconds: f(0.1)}
	byID["p0"] = &CaseResult{MedianSeconds: f(3)}
	byID["p1"] = &CaseResult{MedianSeconds: f(3.1)}
	disk := func(b int64) []Sample { return []Sample{{ExtraDiskBytes: &b}} }
	byID["s0"] = &CaseResult{MedianSeconds: f(3)}
	byID["s1"] = &CaseResult{MedianSeconds: f(1.4), Samples: disk(456e6)}
	byID["s2"] = &CaseResult{MedianSeconds: f(0.2), Samples: disk(1e6)}
	byID["s3"] = &CaseResult{MedianSeconds: f(0.25), Samples: disk(6e6)}
	byID["s4"] = &CaseResult{MedianSeconds: f(0.5), Samples: disk(1e6)}
	got := map[string]string{}
	for _, r := range ratios(byID) {
		name, _, _ := strings.Cut(r.Name, "  ")
		got[name] = r.Verdict
	}
	want := map[string]string{
		"(b)/(d)": "PASS", "(a)/(b)": "PASS", "(e)/(b)": "n/a", "(f)/(b)": "FAIL", "(c)/(b)": "PASS",
		"(c) layer-blob GETs (worst round)": "FAIL", "mbctl peak RSS, (b) and (c)": "FAIL",
		"(u1)/(u3)": "FAIL", "(u5)/(u3)": "n/a", "(u5)/(u2)": "n/a", "(u1) layer-blob GETs (worst round)": "PASS", "(u1)/(u2)": "info", "(u1)/(c)": "info", "(u4)/(u1)": "n/a",
		"(p1)/(p0)": "PASS",
		"(a)/(d)":   "info", "(e)/(d)": "n/a", "(f)/(d)": "info",
		"(s2) 2nd machine, strict, ext4: time": "PASS", "(s2) 2nd machine, strict, ext4: disk (worst round)": "PASS",
		"(s3) 2nd machine, free, btrfs: time": "PASS", "(s3) 2nd machine, free, btrfs: disk (worst round)": "FAIL",
		"(s4) 2nd machine, strict, btrfs: time": "FAIL", "(s4) 2nd machine, strict, btrfs: disk (worst round)": "PASS",
		"(s2)/(s1)": "info", "(s3)/(s1)": "info", "(s4)/(s1)": "info", "(s2)/(s0)": "info", "(s3)/(s0)": "info", "(s4)/(s0)": "info",
		"(s1) 2nd machine, free, ext4: disk (worst round)": "info",
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

func TestParseLayerLog(t *testing.T) {
	log := `time=2026-12-03T17:00:00.000Z level=DEBUG msg="host yggdrasil subnet" subnet=300:2e98:a4b0:1789::/64 source=config
time=2026-12-03T17:00:00.100Z level=DEBUG msg="layer applied" layer=1 digest=sha256:aa waited=2.5ms took=812.5ms entries=9000 skipped=0
time=2026-12-03T17:00:00.150Z level=DEBUG msg="layer downloaded" layer=4 digest=sha256:dd bytes=1900000 took=31ms
Upgraded machine bench from sha256:11 to sha256:22. Go back with 'mbctl machines rollback bench'.
+APP_VERSION=2
time=2026-12-03T17:00:01.000Z level=DEBUG msg="layer applied" layer=4 digest=sha256:dd waited=1µs took=1.2s entries=630 skipped=0
`
	got, err := parseLayerLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []LayerTiming{
		{Layer: 1, WaitSeconds: 0.0025, ApplySeconds: 0.8125},
		{Layer: 4, DownloadSeconds: 0.031, DownloadBytes: 1900000, WaitSeconds: 1e-6, ApplySeconds: 1.2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseLayerLog (-want +got):\n%s", diff)
	}
	if _, err := parseLayerLog(strings.NewReader(`level=DEBUG msg="layer applied" layer=x took=1s` + "\n")); err == nil {
		t.Error("a layer line without a layer number: no error")
	}
	if _, err := parseLayerLog(strings.NewReader(`level=DEBUG msg="layer applied" layer=2 waited=soon took=1s` + "\n")); err == nil {
		t.Error("a layer line with a bad duration: no error")
	}
}

func TestLogFields(t *testing.T) {
	tests := []struct {
		line string
		want map[string]string
	}{
		{`level=DEBUG msg="a \"quoted\" word" n=3`, map[string]string{"level": "DEBUG", "msg": `a "quoted" word`, "n": "3"}},
		{`Machine bench is up to date: x=y`, map[string]string{}},
		{`k=v broken="unterminated`, map[string]string{"k": "v"}},
		{``, map[string]string{}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, logFields(tt.line)); diff != "" {
			t.Errorf("logFields(%q) (-want +got):\n%s", tt.line, diff)
		}
	}
}

func TestBreakdown(t *testing.T) {
	c := &CaseResult{Samples: []Sample{
		{Seconds: 2.0, Layers: []LayerTiming{{Layer: 1, WaitSeconds: 0.1, ApplySeconds: 1.0}, {Layer: 2, DownloadSeconds: 0.2, DownloadBytes: 100, ApplySeconds: 0.1}}},
		{Seconds: 3.0, Layers: []LayerTiming{{Layer: 1, WaitSeconds: 0.1, ApplySeconds: 1.4}, {Layer: 2, DownloadSeconds: 0.4, DownloadBytes: 100, ApplySeconds: 0.3}}},
		{Seconds: 9.0}, // no layer lines: not counted
	}}
	got := c.breakdown()
	want := &Breakdown{
		Layers: []LayerTiming{
			{Layer: 1, WaitSeconds: 0.1, ApplySeconds: 1.2},
			{Layer: 2, DownloadSeconds: 0.3, DownloadBytes: 100, ApplySeconds: 0.2},
		},
		UnpackSeconds: 1.5, // (1.2 + 1.8) / 2
		RestSeconds:   1.0, // (0.8 + 1.2) / 2
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("breakdown (-want +got):\n%s", diff)
	}
	if (&CaseResult{Samples: []Sample{{Seconds: 1}}}).breakdown() != nil {
		t.Error("breakdown without layer lines is not nil")
	}
}

func TestWriteAppLayer(t *testing.T) {
	goTree := t.TempDir()
	for name, content := range map[string]string{
		"src/net/net.go": "package net\n", "src/net/http/http.go": "package http\n",
		"src/encoding/json/json.go": "package json\n", "src/os/os.go": "package os\n",
	} {
		p := filepath.Join(goTree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	var infos []LayerInfo
	for _, ver := range []string{"1", "2"} {
		tree := newTreeStats()
		li, err := writeLayer(t.Context(), filepath.Join(dir, "app-v"+ver+".tar.gz"), tree, func(lw *layerWriter) error {
			return writeAppLayer(lw, goTree, ver)
		})
		if err != nil {
			t.Fatal(err)
		}
		// opt, opt/app, net, net/net.go, net/http, net/http/http.go,
		// encoding, encoding/json, encoding/json/json.go, VERSION
		if li.Entries != 10 {
			t.Errorf("v%s: %d entries, want 10", ver, li.Entries)
		}
		for _, p := range []string{"/opt/app/VERSION", "/opt/app/net/http/http.go", "/opt/app/encoding/json/json.go"} {
			if !tree.exists(p) {
				t.Errorf("v%s lacks %s", ver, p)
			}
		}
		if tree.exists("/opt/app/os") {
			t.Errorf("v%s has /opt/app/os, which is not one of appTrees", ver)
		}
		infos = append(infos, li)
	}
	if infos[0].Digest == infos[1].Digest || infos[0].DiffID == infos[1].DiffID {
		t.Errorf("the two versions have the same layer: %+v", infos)
	}
}

func TestSandboxMounts(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mounts.log")
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b := &bench{tools: map[string]toolInfo{
		// unshare --mount --propagation private -- CMD...: runs CMD here.
		"unshare": {Path: script("unshare", `shift 4; exec "$@"`)},
		"mount":   {Path: script("mount", `echo "$@" >>`+log)},
		"sh":      {Path: "/bin/sh"},
	}}
	argv, err := sandbox(b, dir, []string{"/run:/cases/x/run", "/dev/shm:1777"}, []string{"/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b2, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b2)), "\n")
	want := []string{"--bind /cases/x/run /run", "-t tmpfs -o mode=1777 mbctl-bench /dev/shm"}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "--bind "+filepath.Join(dir, "blob-info-cache")+" ") {
		t.Fatalf("mounts:\n%s", b2)
	}
	if diff := cmp.Diff(want, lines[1:]); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if _, err := sandbox(b, dir, []string{"/run"}, []string{"/bin/true"}); err == nil {
		t.Error("a mount without :MODE or :/DIR: no error")
	}
}

func TestPrintBreakdowns(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	cases := []*CaseResult{
		{ID: "b", MedianSeconds: f(1)},
		{ID: "u1", MedianSeconds: f(2), Breakdown: &Breakdown{
			Layers:        []LayerTiming{{Layer: 1, ApplySeconds: 1.2}, {Layer: 2, DownloadSeconds: 0.05, DownloadBytes: 1_900_000, ApplySeconds: 0.03}},
			UnpackSeconds: 1.7, RestSeconds: 0.3,
		}},
	}
	var out strings.Builder
	printBreakdowns(&out, cases)
	for _, want := range []string{"(u1)", "cached + 1.20 s", "0.05 s (1.9 MB) + 0.03 s", "1.70 s", "0.30 s", "2.00 s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("breakdown lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "(b)") {
		t.Errorf("a case without a breakdown is printed:\n%s", out.String())
	}
	out.Reset()
	printBreakdowns(&out, cases[:1])
	if out.Len() != 0 {
		t.Errorf("no breakdowns, but output:\n%s", out.String())
	}
}
