package ci

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSkip runs a skipping test in a child process with and without
// CI=true: skipped, then failed.
func TestSkip(t *testing.T) {
	if os.Getenv("CI_SKIP_CHILD") == "1" {
		Skip(t, "a reason %d", 42)
		return
	}
	for _, tt := range []struct {
		ci       string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP"},
		{"true", true, "under CI=true no test may skip"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkip$", "-test.v")
		cmd.Env = append(os.Environ(), "CI_SKIP_CHILD=1", "CI="+tt.ci)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tt.wantFail || !strings.Contains(string(out), tt.want) || !strings.Contains(string(out), "a reason 42") {
			t.Errorf("CI=%q: err %v, output:\n%s\nwant %q", tt.ci, err, out, tt.want)
		}
	}
}

// Every skip of the repository goes through Skip: a direct t.Skip would
// pass silently in CI.
func TestNoDirectSkips(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	direct := regexp.MustCompile(`(\w+)\.(Skip|Skipf|SkipNow)\(`)
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		if abs, _ := filepath.Abs(filepath.Dir(path)); abs == here { // this package
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := direct.FindStringSubmatch(line); m != nil && m[1] != "ci" {
				t.Errorf("%s:%d: a direct skip; use ci.Skip (it fails under CI=true): %s", path, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
