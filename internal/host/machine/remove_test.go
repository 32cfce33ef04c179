package machine

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/host/config"
)

func testDirs(t *testing.T) config.Paths {
	t.Helper()
	root := t.TempDir()
	d := config.Paths{Machines: filepath.Join(root, "machines"), Configs: filepath.Join(root, "configs"),
		Storage: filepath.Join(root, "storage"), Nspawn: filepath.Join(root, "nspawn"), Machinectl: filepath.Join(root, "machinectl"),
		Scratch: filepath.Join(root, "scratch")}
	for _, p := range []string{d.Machines, d.Configs, d.Storage, d.Nspawn, d.Machinectl} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeMachine lays out a complete machine with a custom volume outside its
// dirs and returns its paths and the custom dir.
func fakeMachine(t *testing.T, dirs config.Paths, name string) (Paths, string) {
	t.Helper()
	p := PathsFor(dirs, name)
	custom := filepath.Join(filepath.Dir(dirs.Machines), "custom-"+name)
	mustWrite(t, filepath.Join(p.Rootfs, "bin/app"), "app")
	mustWrite(t, filepath.Join(custom, "keep"), "user data")
	mustWrite(t, filepath.Join(p.StorageDir, "var/lib/db/data"), "db")
	mustWrite(t, p.Env, "MAN8S_CONTAINER_NAME="+name+"\nMAN8S_OCI_IMAGE_URL=registry.example/app:1\nMAN8S_YGGDRASIL_ADDRESS=300::1\nMAN8S_MBCTL_CREATED_AT=2026-11-28T10:00:00Z\n")
	mustWrite(t, p.Settings, "[Files]\nBind="+p.Env+":/man8env.env:idmap\nBind="+p.StorageDir+"/var/lib/db:/var/lib/db:idmap\nBind="+custom+":/srv:idmap\n")
	// A symlink inside the rootfs that points at host data must not be followed.
	if err := os.Symlink(custom, filepath.Join(p.Rootfs, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p.Settings, p.SettingsLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p.Rootfs, p.ImageLink); err != nil {
		t.Fatal(err)
	}
	return p, custom
}

func whats(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.What)
	}
	return out
}

func TestRemove(t *testing.T) {
	for _, keepData := range []bool{false, true} {
		t.Run(map[bool]string{false: "all", true: "keep-data"}[keepData], func(t *testing.T) {
			dirs := testDirs(t)
			p, custom := fakeMachine(t, dirs, "web")
			plan, err := PlanRemove(p, keepData)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"root file system", "config dir", "storage dir", "nspawn settings link", "machinectl image link"}
			wantKept := []string{"custom volume dir"}
			if keepData {
				want = []string{"root file system", "nspawn settings link", "machinectl image link"}
				wantKept = []string{"config dir", "storage dir", "custom volume dir"}
			}
			if got := whats(plan.Delete); !slices.Equal(got, want) {
				t.Errorf("Delete = %q, want %q", got, want)
			}
			if got := whats(plan.Kept); !slices.Equal(got, wantKept) {
				t.Errorf("Kept = %q, want %q", got, wantKept)
			}
			if err := plan.Execute(); err != nil {
				t.Fatal(err)
			}
			for _, e := range plan.Delete {
				if _, err := os.Lstat(e.Path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still there", e.Path)
				}
			}
			if _, err := os.Stat(filepath.Join(custom, "keep")); err != nil {
				t.Errorf("custom volume content deleted: %v", err)
			}
			if _, err := os.Stat(p.StorageDir); (err == nil) != keepData {
				t.Errorf("storage dir: %v with keepData=%v", err, keepData)
			}
			// A second remove: only the kept data (or nothing) is left.
			_, err = PlanRemove(p, keepData)
			if keepData == (err != nil) {
				t.Errorf("second PlanRemove: %v", err)
			}
			if !keepData && !errors.Is(err, ErrNotFound) {
				t.Errorf("second PlanRemove = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestRemovePartialAndSymlinkedDirs(t *testing.T) {
	dirs := testDirs(t)
	p := PathsFor(dirs, "half")
	elsewhere := filepath.Join(t.TempDir(), "bigdisk")
	mustWrite(t, filepath.Join(elsewhere, "bin/sh"), "sh")
	if err := os.Symlink(elsewhere, p.Rootfs); err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRemove(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := whats(plan.Missing), []string{"config dir", "storage dir", "nspawn settings link", "machinectl image link"}; !slices.Equal(got, want) {
		t.Errorf("Missing = %q, want %q", got, want)
	}
	if len(plan.Kept) != 1 || plan.Kept[0].Path != elsewhere {
		t.Errorf("Kept = %+v, want the symlinked rootfs's target", plan.Kept)
	}
	if err := plan.Execute(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "bin/sh")); err != nil {
		t.Errorf("followed the rootfs symlink: %v", err)
	}
}

func TestParseBind(t *testing.T) {
	tests := []struct{ in, host, ctr string }{
		{"/srv/a:/a:idmap", "/srv/a", "/a"},
		{"/srv/a", "/srv/a", "/srv/a"},
		{"-/srv/maybe:/m", "/srv/maybe", "/m"},
		{"+/inside:/m", "", "/m"},
		{`/srv/a\:b:/c:idmap`, "/srv/a:b", "/c"},
		{"/srv/x/../y:/y", "/srv/y", "/y"},
	}
	for _, tt := range tests {
		host, ctr, err := ParseBind(tt.in)
		if err != nil || host != tt.host || ctr != tt.ctr {
			t.Errorf("ParseBind(%q) = %q, %q, %v; want %q, %q", tt.in, host, ctr, err, tt.host, tt.ctr)
		}
	}
	if _, _, err := ParseBind("/a:/b:idmap:extra"); err == nil {
		t.Error("four fields accepted")
	}
}

func TestNamesAndDescribe(t *testing.T) {
	dirs := testDirs(t)
	fakeMachine(t, dirs, "web")
	mustWrite(t, filepath.Join(dirs.Configs, "only-config", EnvFile), "MAN8S_OCI_IMAGE_URL=x\n")
	mustWrite(t, filepath.Join(dirs.Machines, ".web.mbctl-staging-1", "f"), "")
	mustWrite(t, filepath.Join(dirs.Machines, "not_valid", "f"), "")
	names, err := Names(dirs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"only-config", "web"}; !slices.Equal(names, want) {
		t.Fatalf("Names = %q, want %q", names, want)
	}
	in, err := Describe(PathsFor(dirs, "web"), State{})
	if err != nil {
		t.Fatal(err)
	}
	if in.Image != "registry.example/app:1" || in.YggAddress != "300::1" || in.Created.IsZero() || len(in.Missing) != 0 {
		t.Errorf("Describe(web) = %+v", in)
	}
	in, err = Describe(PathsFor(dirs, "only-config"), State{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"root file system", "storage dir", "nspawn settings link", "machinectl image link"}; !slices.Equal(in.Missing, want) {
		t.Errorf("Missing = %q, want %q", in.Missing, want)
	}
	in, env, err := DescribeEnv(PathsFor(dirs, "only-config"), State{})
	if err != nil || in.Image != "x" || string(env) != "MAN8S_OCI_IMAGE_URL=x\n" {
		t.Errorf("DescribeEnv(only-config) = %+v, %q, %v", in, env, err)
	}
}

func TestInfoFix(t *testing.T) {
	for _, tt := range []struct {
		missing []string
		want    string
	}{
		{nil, ""},
		{[]string{"root file system", "machinectl image link"}, "machines rebuild web"},
		{[]string{"config dir", "root file system"}, "mbctl host clean"},
	} {
		in := Info{Name: "web", Missing: tt.missing}
		if got := in.Fix(); in.Incomplete() != (tt.want != "") || !strings.Contains(got, tt.want) {
			t.Errorf("missing %v: Fix = %q, Incomplete %v; want %q", tt.missing, got, in.Incomplete(), tt.want)
		}
	}
}
