package provision

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/provision/imageinit"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
	"github.com/man8s/mbctl/internal/host/provision/machinefiles"
	"github.com/man8s/mbctl/internal/image/cache"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/pushed"
	tbregistry "github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// appImage pushes an image with two volumes whose content has owners,
// links and xattrs, a /run to protect, and a symlink that points a third
// volume at the host's root.
func appImage(t *testing.T) *registry.Image {
	t.Helper()
	testbed.RequireT(t, "docker-registry")
	reg := tbregistry.StartT(t, tbregistry.Options{})
	l, err := ociimage.Layer(
		ociimage.File("bin/app", []byte("#!/bin/sh\n"), 0o755),
		ociimage.Entry{Path: "var/lib/app/", Type: '5', Mode: 0o750, UID: 1000, GID: 1000},
		ociimage.Entry{Path: "var/lib/app/data.txt", Type: '0', Mode: 0o640, UID: 1000, GID: 1001, Content: []byte("data"), Xattrs: map[string]string{"user.origin": "image"}},
		ociimage.Entry{Path: "var/lib/app/hard", Type: '1', Linkname: "var/lib/app/data.txt"},
		ociimage.Entry{Path: "var/lib/app/link", Type: '2', Linkname: "data.txt", UID: 1000, GID: 1000},
		ociimage.File("etc/app/app.conf", []byte("listen=:80\n"), 0o644),
		ociimage.File("run/app/ready", []byte("x"), 0o644),
		ociimage.Symlink("escape", "/"),
	)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(ociimage.AppConfig{
		Entrypoint: []string{"/bin/app"}, Cmd: []string{"--name", "a b"},
		Env:        []string{ociimage.DefaultPath, "APP_MODE=prod"},
		StopSignal: "SIGQUIT", Volumes: []string{"/var/lib/app", "/etc/app"},
	}, l)
	if err != nil {
		t.Fatal(err)
	}
	return pushed.ImageT(t, img, reg.Addr()+"/test/app:1")
}

func testOptions(t *testing.T, im *registry.Image) (Options, string) {
	t.Helper()
	root := t.TempDir()
	dirs := config.Paths{Machines: filepath.Join(root, "machines"), Configs: filepath.Join(root, "configs"),
		Storage: filepath.Join(root, "storage"), Nspawn: filepath.Join(root, "etc/nspawn"), Machinectl: filepath.Join(root, "machinectl"),
		Scratch: filepath.Join(root, "scratch"), Images: filepath.Join(root, "machines/.images")}
	c, err := cache.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(t.TempDir(), "man8s-init")
	if err := os.WriteFile(initBin, []byte("init"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{
		Name: "app1", Dirs: dirs, Bridge: "srvgrp0", Template: "network_isolated",
		Image: im, Ref: "test/app:1", Subnet: netip.MustParsePrefix("300:2e98:a4b0:1789::/64"),
		Mode: imageinit.Auto, Cache: c, Init: initinstall.Sources{Init: initBin},
		Volumes: []machine.Volume{
			{Path: "/var/lib/app", Kind: machine.VolumeData},
			{Path: "/etc/app/", Kind: machine.VolumeConfig},
			{Path: "/srv/out", Kind: machine.VolumeCustom, Host: filepath.Join(root, "custom/out")},
		},
		Version: "test", Now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC),
	}, root
}

func TestCreate(t *testing.T) {
	im := appImage(t)
	o, root := testOptions(t, im)
	// A hostile volume: /escape/tmp resolves to the rootfs's own /tmp.
	o.Volumes = append(o.Volumes, machine.Volume{Path: "/escape/tmp", Kind: machine.VolumeSkip})
	o.Env = []machinefiles.EnvVar{{Key: "APP_MODE", Value: "dev"}, {Key: "DB_PASSWORD", Value: `"pw" $X`}, {Key: "MAN8S_STOP_TIMEOUT", Value: "30"}}
	res, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Paths
	if got, want := res.YggAddress.String(), "300:2e98:a4b0:1789:"; !strings.HasPrefix(got, want) {
		t.Errorf("ygg address %s", got)
	}
	// Links.
	for link, target := range map[string]string{p.SettingsLink: p.Settings, p.ImageLink: p.Rootfs} {
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %s", link, got, err, target)
		}
	}
	// Data volume content with owners, modes, hardlink, symlink, xattr.
	data := filepath.Join(p.StorageDir, "var/lib/app")
	snap, err := tree.Snapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tree.Snapshot(filepath.Join(p.Rootfs, "var/lib/app"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := tree.Diff(want, snap); len(diff) > 0 {
		t.Errorf("data volume differs from the image's dir:\n%s", diff)
	}
	var st unix.Stat_t
	if err := unix.Lstat(data, &st); err != nil || st.Uid != 1000 || st.Mode&0o7777 != 0o750 {
		t.Errorf("data volume dir: uid %d mode %o (%v), want 1000, 750", st.Uid, st.Mode&0o7777, err)
	}
	if b, err := os.ReadFile(filepath.Join(p.ConfigDir, "etc/app/app.conf")); err != nil || string(b) != "listen=:80\n" {
		t.Errorf("config volume: %q %v", b, err)
	}
	custom := filepath.Join(root, "custom/out")
	if fi, err := os.Stat(custom); err != nil || !fi.IsDir() {
		t.Errorf("custom volume dir: %v", err)
	}
	// The custom volume's mount point was made inside the rootfs.
	if fi, err := os.Stat(filepath.Join(p.Rootfs, "srv/out")); err != nil || !fi.IsDir() {
		t.Errorf("mount point /srv/out: %v", err)
	}
	// Settings: binds in order, env file first.
	s, err := unitfile.ReadFile(p.Settings)
	if err != nil {
		t.Fatal(err)
	}
	wantBinds := []string{
		p.Env + ":/man8env.env:idmap",
		data + ":/var/lib/app:idmap",
		filepath.Join(p.ConfigDir, "etc/app") + ":/etc/app:idmap",
		custom + ":/srv/out:idmap",
	}
	if got := s.GetAll("Files", "Bind"); !slices.Equal(got, wantBinds) {
		t.Errorf("Bind = %q\nwant %q", got, wantBinds)
	}
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"MAN8S_CONTAINER_NAME": "app1", "MAN8S_STOP_SIGNAL": "SIGQUIT", "APP_MODE": "dev", "DB_PASSWORD": `"pw" $X`, "MAN8S_STOP_TIMEOUT": "30",
		"MAN8S_APPLICATION_ARGS": "/bin/app --name 'a b'", "MAN8S_INIT_MODE": "supervise",
		"MAN8S_OCI_IMAGE_DIGEST": im.Digest.String(), "MAN8S_YGGDRASIL_ADDRESS": res.YggAddress.String(),
	} {
		if got, _ := env.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if fi, err := os.Stat(p.Env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file mode: %v %v", fi.Mode(), err)
	}
	// Init installed, /run protected, rootfs 0755 and the machines dir 0700.
	if b, err := os.ReadFile(filepath.Join(p.Rootfs, "man8s-init/man8s-init")); err != nil || string(b) != "init" {
		t.Errorf("man8s-init: %q %v", b, err)
	}
	// The image has no /usr, which nspawn needs: an empty one, root's.
	if !res.Init.MadeUsr {
		t.Error("Init.MadeUsr = false; the image has no /usr")
	}
	if fi, err := os.Lstat(filepath.Join(p.Rootfs, "usr")); err != nil || fi.Mode() != os.ModeDir|0o755 {
		t.Errorf("/usr: %v (%v), want an empty 0755 dir", fi, err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("/usr owned by %d:%d, want 0:0", st.Uid, st.Gid)
	}
	if ents, err := os.ReadDir(filepath.Join(p.Rootfs, "usr")); err != nil || len(ents) != 0 {
		t.Errorf("/usr holds %v (%v)", ents, err)
	}
	if _, err := os.Stat(filepath.Join(p.Rootfs, "run.man8sprotected/app/ready")); err != nil {
		t.Errorf("/run not protected: %v", err)
	}
	for dir, mode := range map[string]os.FileMode{p.Rootfs: 0o755, o.Dirs.Machines: 0o700, o.Dirs.Configs: 0o700} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", dir, fi.Mode().Perm(), err, mode)
		}
	}
	// Nothing left from staging.
	for _, d := range []string{o.Dirs.Machines, o.Dirs.Configs, o.Dirs.Storage, filepath.Join(root, "custom")} {
		if m, _ := filepath.Glob(filepath.Join(d, ".*mbctl-staging*")); len(m) > 0 {
			t.Errorf("staging left: %v", m)
		}
	}
	// A second create of the same name is refused and changes nothing.
	if _, err := Create(t.Context(), o); !errors.As(err, new(*machine.ExistsError)) {
		t.Errorf("second Create = %v, want ExistsError", err)
	}
	if _, err := os.Stat(p.Rootfs); err != nil {
		t.Errorf("refused Create removed the machine: %v", err)
	}
}

// Interrupting Create before each of its steps leaves the host as it was,
// but for the shared parent dirs (machines, configs, ...), which stay with
// their final modes and nothing in them.
// TestCreateRefusesMan8sEnvKeys: a MAN8S_ key that is not meant for users,
// given at pull, fails Create before it makes anything.
func TestCreateRefusesMan8sEnvKeys(t *testing.T) {
	im := appImage(t)
	for _, key := range []string{"MAN8S_YGGDRASIL_ADDRESS", "MAN8S_INIT_MODE", "MAN8S_TYPO"} {
		t.Run(key, func(t *testing.T) {
			o, root := testOptions(t, im)
			before, err := tree.Snapshot(root)
			if err != nil {
				t.Fatal(err)
			}
			o.Env = []machinefiles.EnvVar{{Key: "OK", Value: "1"}, {Key: key, Value: "x"}}
			if _, err := Create(t.Context(), o); err == nil || !strings.Contains(err.Error(), key) {
				t.Fatalf("Create = %v, want an error naming %s", err, key)
			}
			after, err := tree.Snapshot(root)
			if err != nil {
				t.Fatal(err)
			}
			if diff := tree.Diff(before, after); len(diff) > 0 {
				t.Errorf("a refused Create changed the host:\n%s", diff)
			}
		})
	}
}

func TestCreateInterruptedAtEveryStep(t *testing.T) {
	im := appImage(t)
	points := append(Steps(), "install:config", "install:storage", "install:volume", "install:rootfs",
		"install:settings link", "install:machinectl link")
	for _, at := range points {
		t.Run(at, func(t *testing.T) {
			o, root := testOptions(t, im)
			before, err := tree.Snapshot(root)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			o.BeforeStep = func(step string) error {
				if step == at {
					cancel()
					return ctx.Err()
				}
				return nil
			}
			if _, err := Create(ctx, o); !errors.Is(err, context.Canceled) {
				t.Fatalf("Create = %v, want context.Canceled", err)
			}
			after, err := tree.Snapshot(root)
			if err != nil {
				t.Fatal(err)
			}
			checkOnlySharedDirsAdded(t, o.Dirs, root, before, after)
		})
	}
}

// checkOnlySharedDirsAdded fails unless after differs from before only by
// empty shared parent dirs of dirs (and their own parents) with the modes
// Create gives them.
func checkOnlySharedDirsAdded(t *testing.T, dirs config.Paths, root string, before, after map[string]tree.Node) {
	t.Helper()
	shared := map[string]os.FileMode{}
	for d, mode := range map[string]os.FileMode{dirs.Machines: 0o700, dirs.Configs: 0o700, dirs.Storage: 0o700, dirs.Nspawn: 0o755, dirs.Machinectl: 0o700,
		JournalDir(dirs): 0o700} {
		for p := d; p != root; p = filepath.Dir(p) {
			rel, _ := filepath.Rel(root, p)
			shared["/"+rel] = mode
		}
	}
	for _, d := range tree.Diff(before, after) {
		path, _, _ := strings.Cut(d, ": ")
		mode, ok := shared[path]
		if !ok || !strings.Contains(d, "only in the second tree") {
			t.Errorf("the host changed: %s", d)
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != mode {
			t.Errorf("shared dir %s: %v (%v), want a dir with mode %v", path, fi.Mode(), err, mode)
		}
	}
}

// Regression (issue 18): two pulls on a fresh host, B completes while A
// runs, then A is interrupted. A's undo must not take the shared parent
// dirs, and B with them.
func TestCreateInterruptedKeepsOtherMachine(t *testing.T) {
	im := appImage(t)
	for _, at := range Steps() {
		t.Run(at, func(t *testing.T) {
			a, root := testOptions(t, im)
			a.Name = "ma"
			a.Volumes = []machine.Volume{
				{Path: "/var/lib/app", Kind: machine.VolumeData},
				{Path: "/etc/app", Kind: machine.VolumeSkip},
				{Path: "/srv/out", Kind: machine.VolumeCustom, Host: filepath.Join(root, "custom/a/out")},
			}
			b := a
			b.Name = "mb"
			b.Volumes = []machine.Volume{
				{Path: "/var/lib/app", Kind: machine.VolumeData},
				{Path: "/etc/app", Kind: machine.VolumeConfig},
				{Path: "/srv/out", Kind: machine.VolumeCustom, Host: filepath.Join(root, "custom/b/out")},
			}
			var made *Created
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			a.BeforeStep = func(step string) error {
				if step != at {
					return nil
				}
				// Under "prepare" A has made nothing yet: B then makes the
				// parents, A's staging comes after.
				var err error
				if made, err = Create(t.Context(), b); err != nil {
					t.Fatalf("Create(mb) while ma runs: %v", err)
				}
				cancel()
				return ctx.Err()
			}
			if _, err := Create(ctx, a); !errors.Is(err, context.Canceled) {
				t.Fatalf("Create(ma) = %v, want context.Canceled", err)
			}
			p := made.Paths
			for _, path := range []string{p.Rootfs, p.ConfigDir, p.Env, p.Settings, p.StorageDir, p.SettingsLink, p.ImageLink,
				filepath.Join(p.StorageDir, "var/lib/app/data.txt"), filepath.Join(root, "custom/b/out")} {
				if _, err := os.Lstat(path); err != nil {
					t.Errorf("ma's undo removed mb's %s: %v", path, err)
				}
			}
			for _, path := range []string{filepath.Join(a.Dirs.Machines, "ma"), filepath.Join(a.Dirs.Configs, "ma"),
				filepath.Join(a.Dirs.Storage, "ma"), filepath.Join(root, "custom/a")} {
				if _, err := os.Lstat(path); err == nil {
					t.Errorf("ma's %s was left behind", path)
				}
			}
			for _, d := range []string{a.Dirs.Machines, a.Dirs.Configs, a.Dirs.Storage, filepath.Join(root, "custom")} {
				if m, _ := filepath.Glob(filepath.Join(d, ".*mbctl-staging*")); len(m) > 0 {
					t.Errorf("staging left: %v", m)
				}
			}
		})
	}
}

// Shared parents are created by whoever comes first; a concurrent creator
// is not an error.
func TestEnsureDirConcurrent(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "a/b/c")
	errs := make(chan error, 8)
	for range 8 {
		go func() { _, err := ensureDir(path, 0o700, nil); errs <- err }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("ensureDir: %v", err)
		}
	}
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		if fi, err := os.Stat(filepath.Join(root, p)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	if made, err := ensureDir(path, 0o700, nil); err != nil || len(made) != 0 {
		t.Errorf("ensureDir of an existing dir = %v, %v; want nothing made", made, err)
	}
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"abs", "/etc"}, {"up", "../../.."}, {"dangling", "/nowhere/deeper"}} {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"/abs/x", "etc/x"},
		{"/up/y", "y"},
		{"/a/b", "a/b"},
	} {
		got, err := resolveInRoot(root, tt.in, true)
		if err != nil || got != filepath.Join(root, tt.want) {
			t.Errorf("resolveInRoot(%s) = %q, %v; want %s", tt.in, got, err, filepath.Join(root, tt.want))
		}
	}
	if _, err := os.Stat("/etc/x"); err == nil {
		t.Fatal("created /etc/x on the host")
	}
	if _, err := resolveInRoot(root, "/dangling/z", true); err == nil || !strings.Contains(err.Error(), "dangling") {
		t.Errorf("through a dangling symlink: %v", err)
	}
}

// A rootfs reached through a symlinked parent directory (paths.machines
// linked to another disk) resolves inside it, not "outside" it.
func TestResolveInRootSymlinkedParent(t *testing.T) {
	disk := t.TempDir()
	if err := os.MkdirAll(filepath.Join(disk, "m", "rootfs", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(disk, "m", "rootfs", "abs")); err != nil {
		t.Fatal(err)
	}
	machines := filepath.Join(t.TempDir(), "machines")
	if err := os.Symlink(disk, machines); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(machines, "m", "rootfs")
	for _, tt := range []struct{ in, want string }{
		{"/etc", "etc"},
		{"/abs/new", "etc/new"},
	} {
		got, err := resolveInRoot(root, tt.in, true)
		if err != nil || got != filepath.Join(root, tt.want) {
			t.Errorf("resolveInRoot(%s) = %q, %v; want %s", tt.in, got, err, filepath.Join(root, tt.want))
		}
	}
	if _, err := os.Stat(filepath.Join(disk, "m", "rootfs", "etc", "new")); err != nil {
		t.Errorf("/abs/new not created in the rootfs: %v", err)
	}
}

// Clean removes staging dirs no run names and keeps a live run's.
func TestCleanOrphansAndLive(t *testing.T) {
	root := t.TempDir()
	dirs := config.Paths{Machines: filepath.Join(root, "machines"), Configs: filepath.Join(root, "configs"),
		Storage: filepath.Join(root, "storage"), Scratch: filepath.Join(root, "scratch")}
	orphan := filepath.Join(dirs.Storage, ".old"+stagingMark+"x1")
	if err := os.MkdirAll(filepath.Join(orphan, "var/lib"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan, "var/lib/db"), make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	machineDir := filepath.Join(dirs.Machines, "keep")
	if err := os.MkdirAll(machineDir, 0o700); err != nil {
		t.Fatal(err)
	}
	live, err := journal.Begin(JournalDir(dirs), "machines pull busy")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Rollback()
	busy, err := live.MkdirUnique(dirs.Machines, StagingPrefix(filepath.Join(dirs.Machines, "busy")))
	if err != nil {
		t.Fatal(err)
	}

	rep, err := Clean(dirs, true)
	if err != nil || !slices.Equal(rep.Orphans, []string{orphan}) || rep.Bytes != 1000 {
		t.Fatalf("Clean(dry run) = %+v, %v", rep, err)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("the dry run removed %s", orphan)
	}
	rep, err = Clean(dirs, false)
	if err != nil || !slices.Equal(rep.Orphans, []string{orphan}) || len(rep.Dead) != 0 {
		t.Fatalf("Clean = %+v, %v", rep, err)
	}
	for p, want := range map[string]bool{orphan: false, busy: true, machineDir: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", p, err == nil, want)
		}
	}
}

// A port published since the caller's check (another machine's
// `machines publish` during the download) stops the create at its last
// step, under the publish lock, and the create leaves nothing behind.
func TestCreateRefusesPortTakenMeanwhile(t *testing.T) {
	im := appImage(t)
	o, root := testOptions(t, im)
	first := o
	first.Name, first.Volumes = "app0", nil
	if _, err := Create(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	if _, err := machine.Publish(o.Dirs, "app0", []nspawnport.Port{{Protocol: nspawnport.TCP, Host: 8080, Container: 80}}); err != nil {
		t.Fatal(err)
	}
	before, err := tree.Snapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	o.Ports = []nspawnport.Port{{Protocol: nspawnport.TCP, Host: 8080, Container: 8080}}
	if _, err := Create(t.Context(), o); err == nil || !strings.Contains(err.Error(), "host port 8080/tcp is published by machine app0") {
		t.Fatalf("Create = %v, want the port named as app0's", err)
	}
	after, err := tree.Snapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	if diff := tree.Diff(before, after); len(diff) > 0 {
		t.Errorf("a refused Create changed the host:\n%s", diff)
	}
}
