package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// pkgbuild is the PKGBUILD as makepkg sees it: its variables, after
// running its top level (assignments only), and the commands its
// functions run, one line each.
type pkgbuild struct {
	vars  map[string][]string
	funcs map[string][]string
}

func readPKGBUILD(t *testing.T) pkgbuild {
	t.Helper()
	src, err := os.ReadFile("../../PKGBUILD")
	if err != nil {
		t.Fatal(err)
	}
	file, err := syntax.NewParser().Parse(strings.NewReader(string(src)), "PKGBUILD")
	if err != nil {
		t.Fatalf("parsing PKGBUILD: %v", err)
	}
	for _, st := range file.Stmts {
		switch st.Cmd.(type) {
		case *syntax.CallExpr, *syntax.FuncDecl:
			if c, ok := st.Cmd.(*syntax.CallExpr); ok && len(c.Args) > 0 {
				t.Errorf("PKGBUILD line %d: a command at the top level runs whenever makepkg reads the file; only assignments and functions belong there", st.Pos().Line())
			}
		default:
			t.Errorf("PKGBUILD line %d: only assignments and functions belong at the top level", st.Pos().Line())
		}
	}
	r, err := interp.New(interp.StdIO(nil, io.Discard, io.Discard), interp.Env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background(), file); err != nil {
		t.Fatalf("running PKGBUILD's assignments: %v", err)
	}
	p := pkgbuild{vars: map[string][]string{}, funcs: map[string][]string{}}
	for name, v := range r.Vars {
		if v.List != nil {
			p.vars[name] = v.List
		} else {
			p.vars[name] = []string{v.Str}
		}
	}
	printer := syntax.NewPrinter()
	for name, body := range r.Funcs {
		syntax.Walk(body, func(n syntax.Node) bool {
			if c, ok := n.(*syntax.CallExpr); ok && len(c.Args) > 0 {
				var b strings.Builder
				if err := printer.Print(&b, c); err != nil {
					t.Fatal(err)
				}
				p.funcs[name] = append(p.funcs[name], b.String())
			}
			return true
		})
	}
	return p
}

// The PKGBUILD's fields, checked as makepkg and namcap would (Arch is not
// here to build it), and held to the Debian package's: the same name, the
// same dependencies, and the same Makefile targets, so the two packages
// cannot drift apart.
func TestPKGBUILD(t *testing.T) {
	p := readPKGBUILD(t)
	one := func(name string) string {
		v := p.vars[name]
		if len(v) != 1 || v[0] == "" {
			t.Errorf("PKGBUILD: %s = %q, want one value", name, v)
			return ""
		}
		return v[0]
	}
	for _, tt := range []struct {
		field string
		re    string
	}{
		{"pkgname", `^mbctl$`},
		{"pkgver", `^[0-9][0-9a-z.]*$`}, // makepkg: no "-", ":", "/" or blanks
		{"pkgrel", `^[1-9][0-9]*$`},
		{"pkgdesc", `^[A-Z].{10,80}[^.]$`},
		{"url", `^https://github\.com/man8s/mbctl$`},
	} {
		if v := one(tt.field); !regexp.MustCompile(tt.re).MatchString(v) {
			t.Errorf("PKGBUILD: %s=%q does not match %s", tt.field, v, tt.re)
		}
	}
	for _, field := range []string{"arch", "license", "depends", "makedepends", "source", "sha256sums"} {
		if len(p.vars[field]) == 0 {
			t.Errorf("PKGBUILD: no %s", field)
		}
	}
	if src := p.vars["source"]; len(src) != 1 || !strings.HasSuffix(src[0], "/archive/refs/tags/v"+one("pkgver")+".tar.gz") {
		t.Errorf("PKGBUILD: source=%q is not the tag v$pkgver's tarball", src)
	}
	for _, dep := range []string{"systemd", "yggdrasil", "isa-l"} {
		if !slices.Contains(p.vars["depends"], dep) {
			t.Errorf("PKGBUILD: depends=%q lacks %s", p.vars["depends"], dep)
		}
	}
	if !slices.Contains(p.vars["makedepends"], "go") {
		t.Errorf("PKGBUILD: makedepends=%q lacks go (built with the system's Go)", p.vars["makedepends"])
	}
	opt := regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*: [a-z].+$`)
	for _, o := range p.vars["optdepends"] {
		if !opt.MatchString(o) {
			t.Errorf("PKGBUILD: optdepends entry %q is not \"package: what for\"", o)
		}
	}
	if !slices.ContainsFunc(p.vars["optdepends"], func(o string) bool { return strings.HasPrefix(o, "busybox: ") }) {
		t.Errorf("PKGBUILD: optdepends=%q lacks busybox", p.vars["optdepends"])
	}
	for _, field := range []string{"install", "backup"} {
		if _, ok := p.vars[field]; ok {
			t.Errorf("PKGBUILD: %s is set: the package has no scriptlets and installs nothing under /etc", field)
		}
	}

	// The same Makefile targets as debian/rules.
	rules, err := os.ReadFile("../../debian/rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		fn, pkgbuild, rules string
	}{
		{"build", `^make build man `, `(?m)^\t\$\(MAKE\) build man$`},
		{"package", `^make install DESTDIR="\$pkgdir" PREFIX=/usr `, `(?m)^\t\$\(MAKE\) install DESTDIR=\$\(CURDIR\)/\$\(PKG\) PREFIX=/usr$`},
	} {
		re := regexp.MustCompile(tt.pkgbuild)
		if !slices.ContainsFunc(p.funcs[tt.fn], re.MatchString) {
			t.Errorf("PKGBUILD: %s() runs %q, none matching %s", tt.fn, p.funcs[tt.fn], tt.pkgbuild)
		}
		if !regexp.MustCompile(tt.rules).Match(rules) {
			t.Errorf("debian/rules runs no line matching %s: the packages would drift", tt.rules)
		}
	}
	for fn, cmds := range p.funcs {
		for _, c := range cmds {
			if strings.Contains(c, "/etc") || strings.Contains(c, "systemctl") {
				t.Errorf("PKGBUILD: %s() runs %q: the package writes nothing under /etc and enables nothing", fn, c)
			}
		}
	}
}

// The Debian package: the same name and dependencies as the PKGBUILD's,
// no maintainer scripts (they would enable units), no conffiles.
func TestDebianControl(t *testing.T) {
	control, err := os.ReadFile("../../debian/control")
	if err != nil {
		t.Fatal(err)
	}
	c := string(control)
	for _, want := range []string{"\nPackage: mbctl\n", "Rules-Requires-Root: no", "Build-Depends: make, gcc, libc6-dev, libisal-dev"} {
		if !strings.Contains(c, want) {
			t.Errorf("debian/control lacks %q", want)
		}
	}
	dep := regexp.MustCompile(`(?m)^Depends: (.*)$`).FindStringSubmatch(c)
	if dep == nil {
		t.Fatal("debian/control: no Depends")
	}
	for _, want := range []string{"${shlibs:Depends}", "systemd", "systemd-container", "yggdrasil"} {
		if !slices.Contains(strings.Split(dep[1], ", "), want) {
			t.Errorf("debian/control: Depends: %s lacks %s", dep[1], want)
		}
	}
	entries, err := os.ReadDir("../../debian")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		for _, script := range []string{"preinst", "postinst", "prerm", "postrm", "conffiles", "install", "links"} {
			if e.Name() == script || strings.HasSuffix(e.Name(), "."+script) {
				t.Errorf("debian/%s: the package has no maintainer scripts or files outside make install", e.Name())
			}
		}
	}
}

// pkgversion.sh turns git describe into a version both dpkg and makepkg
// accept, ordered after its tag and before the next one.
func TestPkgversion(t *testing.T) {
	arch := regexp.MustCompile(`^[0-9][0-9a-z.]*$`)
	for _, tt := range []struct{ describe, want string }{
		{"v0.3.0", "0.3.0"},
		{"v0.3.0-0-gabc1234", "0.3.0"},
		{"v0.3.0-12-g1c7a497", "0.3.0.r12.g1c7a497"},
		{"v0.3.0-12-g1c7a497-dirty", "0.3.0.r12.g1c7a497"},
		{"v1.2.0-rc1-5-gdeadbee", "1.2.0.rc1.r5.gdeadbee"},
		{"1c7a497", "0.0.0.r42.g1c7a497"},
	} {
		out, err := exec.Command("../../scripts/pkgversion.sh", tt.describe, "42").Output()
		got := strings.TrimSpace(string(out))
		if err != nil || got != tt.want {
			t.Errorf("pkgversion.sh %s = %q, %v; want %q", tt.describe, got, err, tt.want)
		}
		if !arch.MatchString(got) {
			t.Errorf("pkgversion.sh %s = %q: not a pkgver makepkg accepts", tt.describe, got)
		}
		if _, err := exec.LookPath("dpkg"); err == nil {
			if err := exec.Command("dpkg", "--compare-versions", got, "gt", "0.0.0").Run(); err != nil && got != "0.0.0" {
				t.Errorf("dpkg: %s is not above 0.0.0: %v", got, err)
			}
		}
	}
	for _, tt := range []struct{ lower, higher string }{
		{"0.0.0.r42.g1c7a497", "0.1.0"},
		{"0.3.0", "0.3.0.r12.g1c7a497"},
		{"0.3.0.r12.g1c7a497", "0.3.1"},
	} {
		if _, err := exec.LookPath("dpkg"); err != nil {
			break
		}
		if err := exec.Command("dpkg", "--compare-versions", tt.lower, "lt", tt.higher).Run(); err != nil {
			t.Errorf("dpkg orders %s after %s", tt.lower, tt.higher)
		}
	}
	if out, err := exec.Command("../../scripts/pkgversion.sh", "nonsense").CombinedOutput(); err == nil {
		t.Errorf("pkgversion.sh nonsense = %q, want an error", out)
	}
}
