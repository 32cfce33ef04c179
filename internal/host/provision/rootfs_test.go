package provision

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/fsutil/btrfs"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/host/provision/probe"
	"github.com/man8s/mbctl/internal/testbed/loopfs"
)

// underDir moves every path of dirs under root.
func underDir(root string) config.Paths {
	return config.Paths{Machines: filepath.Join(root, "machines"), Configs: filepath.Join(root, "configs"),
		Storage: filepath.Join(root, "storage"), Nspawn: filepath.Join(root, "etc/nspawn"), Machinectl: filepath.Join(root, "machinectl"),
		Scratch: filepath.Join(root, "scratch"), Images: filepath.Join(root, "machines/.images")}
}

// TestCreateStrict makes two strict machines from one image: both link
// to one image root, made once, which holds man8s-init and the mount
// points; their settings mount it read-only.
func TestCreateStrict(t *testing.T) {
	im := appImage(t)
	o, root := testOptions(t, im)
	o.Strict = true
	o.Volumes = o.Volumes[:2] // the image's own
	first, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if first.Root == nil || first.Pull == nil {
		t.Fatalf("first strict machine: root %v, pull %v; want a root built by an unpack", first.Root, first.Pull)
	}
	o.Name = "app2"
	second, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if second.Pull != nil {
		t.Error("the second strict machine unpacked the image again")
	}
	for _, res := range []*Created{first, second} {
		p := res.Paths
		if got, err := os.Readlink(p.Rootfs); err != nil || got != first.Root.Path {
			t.Errorf("%s: rootfs -> %q (%v), want the image root %s", p.Name, got, err, first.Root.Path)
		}
		if res.Init.Init == "" {
			t.Errorf("%s: no init reported", p.Name)
		}
		settings, err := unitfile.ReadFile(p.Settings)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range [][3]string{{"Files", "ReadOnly", "yes"}, {"Exec", "ResolvConf", "off"}} {
			if v, _ := settings.Get(kv[0], kv[1]); v != kv[2] {
				t.Errorf("%s: %s=%q, want %q", p.Name, kv[1], v, kv[2])
			}
		}
		resolv := filepath.Join(p.ConfigDir, machine.ResolvFile)
		if !strings.Contains(strings.Join(settings.GetAll("Files", "Bind"), "\n"), resolv+":/etc/resolv.conf:idmap") {
			t.Errorf("%s: no Bind of %s: %q", p.Name, resolv, settings.GetAll("Files", "Bind"))
		}
		if _, err := os.Stat(resolv); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		env, err := envfile.ReadFile(p.Env)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := env.Get(man8env.KeyStrict); v != "yes" {
			t.Errorf("%s: %s=%q", p.Name, man8env.KeyStrict, v)
		}
		// The data volume got the image's content.
		if b, err := os.ReadFile(filepath.Join(p.StorageDir, "var/lib/app/data.txt")); err != nil || string(b) != "data" {
			t.Errorf("%s: data volume: %q, %v", p.Name, b, err)
		}
	}
	for _, f := range []string{man8env.InitPath, man8env.EnvPath, "etc/resolv.conf", "var/lib/app"} {
		if _, err := os.Lstat(filepath.Join(first.Root.Path, f)); err != nil {
			t.Errorf("image root: %v", err)
		}
	}

	// A volume path the image lacks cannot be mounted on a read-only root.
	o.Name = "app3"
	o.Volumes = append(o.Volumes, machine.Volume{Path: "/srv/out", Kind: machine.VolumeCustom, Host: filepath.Join(root, "custom/out")})
	_, err = Create(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "volume /srv/out is not in the image") {
		t.Fatalf("strict machine with a volume outside the image: %v", err)
	}
	if found, _ := machine.PathsFor(o.Dirs, "app3").Existing(); len(found) > 0 {
		t.Errorf("the failed pull left %v", found)
	}
}

// TestCreateBtrfs makes two machines on btrfs: each rootfs is a writable
// snapshot of one read-only image root, unpacked once.
func TestCreateBtrfs(t *testing.T) {
	im := appImage(t)
	o, _ := testOptions(t, im)
	mnt := loopfs.MountT(t, "btrfs", 512<<20)
	o.Dirs = underDir(mnt)
	o.Volumes = o.Volumes[:2]
	first, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	o.Name = "app2"
	second, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if first.Root == nil || !first.Root.Btrfs || first.Pull == nil || second.Pull != nil {
		t.Fatalf("root %+v, pulls %v %v: want one btrfs root, unpacked once", first.Root, first.Pull, second.Pull)
	}
	if ro, err := btrfs.ReadOnly(first.Root.Path); err != nil || !ro {
		t.Errorf("image root read-only = %v, %v", ro, err)
	}
	for _, res := range []*Created{first, second} {
		if sub, err := btrfs.IsSubvolume(res.Paths.Rootfs); err != nil || !sub {
			t.Errorf("%s: rootfs is not a subvolume: %v", res.Paths.Name, err)
		}
		if _, err := os.Stat(filepath.Join(res.Paths.Rootfs, man8env.InitPath)); err != nil {
			t.Errorf("%s: %v", res.Paths.Name, err)
		}
	}
	// Free machines: a write stays in its own machine.
	if err := os.WriteFile(filepath.Join(first.Paths.Rootfs, "etc/app/mine"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(second.Paths.Rootfs, "etc/app/mine")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write into one snapshot shows in the other: %v", err)
	}
	if err := os.WriteFile(filepath.Join(first.Root.Path, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing into the image root: %v, want EROFS", err)
	}
}

// TestUpgradeStrictAndBtrfs takes a strict machine and a free machine on
// btrfs to a new image and back: the strict one switches image roots (the
// old root stays as its rollback point), the free one gets a snapshot of
// the new root; a rebuild gives back the same tree.
func TestUpgradeStrictAndBtrfs(t *testing.T) {
	v1, v2 := versionImages(t)
	for _, tt := range []struct {
		name   string
		strict bool
		btrfs  bool
	}{{"strict", true, false}, {"strict on btrfs", true, true}, {"free on btrfs", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			o, _ := testOptions(t, v1)
			if tt.btrfs {
				o.Dirs = underDir(loopfs.MountT(t, "btrfs", 512<<20))
			}
			o.Strict = tt.strict
			o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
			created, err := Create(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			p := created.Paths
			uo := upgradeOptions(o, v2)
			if _, err := Upgrade(t.Context(), uo); err != nil {
				t.Fatal(err)
			}
			version := func() string { return readFile(t, filepath.Join(p.Rootfs, "usr/share/app/version")) }
			if got := version(); got != "2\n" {
				t.Errorf("after the upgrade: version %q", got)
			}
			if tt.strict {
				r2, _ := os.Readlink(p.Rootfs)
				r1, _ := os.Readlink(PreviousRootfs(p))
				if r1 != created.Root.Path || r2 == r1 || filepath.Dir(r2) != o.Dirs.Images {
					t.Errorf("rootfs -> %s, previous -> %s; want a new root and the old one %s", r2, r1, created.Root.Path)
				}
			}
			if _, err := Rollback(o.Dirs, o.Name, nil); err != nil {
				t.Fatal(err)
			}
			if got := version(); got != "1\n" {
				t.Errorf("after the rollback: version %q", got)
			}
			if err := btrfs.RemoveAll(p.Rootfs); err != nil {
				t.Fatal(err)
			}
			if _, err := Rebuild(t.Context(), RebuildOptions{Name: o.Name, Dirs: o.Dirs, Image: v1, Cache: o.Cache, Init: o.Init}); err != nil {
				t.Fatal(err)
			}
			if got := version(); got != "1\n" {
				t.Errorf("after the rebuild: version %q", got)
			}
			if got := isLink(p.Rootfs); got != tt.strict {
				t.Errorf("rebuilt rootfs is a link: %v, want %v", got, tt.strict)
			}
		})
	}
}

// TestOwnCommandSurvivesUpgrade: a command given at pull (--cmd) is the
// machine's, and an upgrade whose image changes its CMD keeps it.
func TestOwnCommandSurvivesUpgrade(t *testing.T) {
	v1, v2 := versionImages(t)
	o, _ := testOptions(t, v1)
	o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
	o.Cmd = []string{"worker", "--id", "a b"}
	res, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := man8env.KeyArgs + "=/bin/app worker --id 'a b'\n"
	if env := readFile(t, res.Paths.Env); !strings.Contains(env, want) {
		t.Fatalf("env lacks %q:\n%s", want, env)
	}
	if base := readFile(t, filepath.Join(StateDir(res.Paths), baseEnv)); !strings.Contains(base, man8env.KeyArgs+"=/bin/app\n") {
		t.Errorf("the merge base holds the machine's command, not the image's:\n%s", base)
	}
	uo := upgradeOptions(o, v2)
	if _, err := Upgrade(t.Context(), uo); err != nil {
		t.Fatal(err)
	}
	if env := readFile(t, res.Paths.Env); !strings.Contains(env, want) {
		t.Errorf("the upgrade dropped the machine's command:\n%s", env)
	}
}

// TestProbeKept: the second pull of an image with the same variables
// takes the first one's probe findings instead of probing again.
func TestProbeKept(t *testing.T) {
	im := appImage(t)
	o, _ := testOptions(t, im)
	o.Volumes = o.Volumes[:2]
	runs := 0
	o.Probe = func(context.Context, probe.Input) (*probe.Findings, error) {
		runs++
		return &probe.Findings{Output: "secret output", Took: time.Second}, nil
	}
	first, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	o.Name = "app2"
	second, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if runs != 1 || first.ProbeCached || !second.ProbeCached || second.Probe == nil || second.Probe.Output != "" {
		t.Errorf("probe runs %d, cached %v %v, second %+v", runs, first.ProbeCached, second.ProbeCached, second.Probe)
	}
	o.Name, o.Env = "app3", []machinefiles.EnvVar{{Key: "APP_MODE", Value: "other"}}
	if _, err := Create(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if runs != 2 {
		t.Errorf("other variables did not probe again: %d runs", runs)
	}
}

func TestKeptMode(t *testing.T) {
	env := func(s string) *envfile.File {
		f, err := envfile.Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := env(man8env.KeyArgs + "=/bin/app\n")
	user := env(man8env.KeyInitMode + "=exec-pid1\n")
	for _, tt := range []struct {
		name string
		mode imageinit.Mode
		cfg  ggcrv1.Config
		base *envfile.File
		want imageinit.Mode
		ok   bool
	}{
		{"same command", imageinit.Auto, ggcrv1.Config{Entrypoint: []string{"/bin/app"}}, base, imageinit.ExecPID1, true},
		{"new command", imageinit.Auto, ggcrv1.Config{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--fast"}}, base, "", false},
		{"mode given", imageinit.Supervise, ggcrv1.Config{Entrypoint: []string{"/bin/app"}}, base, "", false},
		{"no base", imageinit.Auto, ggcrv1.Config{Entrypoint: []string{"/bin/app"}}, nil, "", false},
	} {
		u := &upgrade{o: UpgradeOptions{Mode: tt.mode}, baseEnv: tt.base, userEnv: user}
		if got, ok := u.keptMode(tt.cfg); got != tt.want || ok != tt.ok {
			t.Errorf("%s: keptMode = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
