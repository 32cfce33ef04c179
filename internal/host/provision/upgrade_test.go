package provision

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/format/unitfile"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/image/registry"
	"github.com/man8s/mbctl/internal/testbed"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/pushed"
	tbregistry "github.com/man8s/mbctl/internal/testbed/registry"
	"github.com/man8s/mbctl/internal/testbed/tree"
)

// versionImages pushes two versions of an app under one tag's history:
// v2 adds a layer, changes an env value and the command, adds a
// variable and a volume.
func versionImages(t *testing.T) (v1, v2 *registry.Image) {
	t.Helper()
	testbed.RequireT(t, "docker-registry")
	reg := tbregistry.StartT(t, tbregistry.Options{})
	base, err := ociimage.Layer(
		ociimage.File("bin/app", []byte("#!/bin/sh\necho v1\n"), 0o755),
		ociimage.File("usr/share/app/version", []byte("1\n"), 0o644),
		ociimage.File("var/lib/app/seed", []byte("seed"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := ociimage.Layer(
		ociimage.File("usr/share/app/version", []byte("2\n"), 0o644),
		ociimage.File("var/log/app/README", []byte("logs"), 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	push := func(tag string, cfg ociimage.AppConfig, layers ...ggcrv1.Layer) *registry.Image {
		img, err := ociimage.Image(cfg, layers...)
		if err != nil {
			t.Fatal(err)
		}
		return pushed.ImageT(t, img, reg.Addr()+"/test/up:"+tag)
	}
	v1 = push("1", ociimage.AppConfig{Entrypoint: []string{"/bin/app"}, Env: []string{ociimage.DefaultPath, "APP_MODE=prod", "APP_LEVEL=1"},
		Volumes: []string{"/var/lib/app"}}, base)
	v2 = push("2", ociimage.AppConfig{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--fast"}, Env: []string{ociimage.DefaultPath, "APP_MODE=prod", "APP_LEVEL=2", "APP_NEW=yes"},
		Volumes: []string{"/var/lib/app", "/var/log/app"}}, base, patch)
	return v1, v2
}

func upgradeOptions(o Options, im *registry.Image) UpgradeOptions {
	return UpgradeOptions{
		Name: o.Name, Dirs: o.Dirs, Bridge: o.Bridge, Image: im, Ref: "test/up:2", Subnet: o.Subnet,
		Mode: o.Mode, Cache: o.Cache, Init: o.Init, Version: "test2", Now: o.Now,
		Volumes: []machine.Volume{{Path: "/var/log/app", Kind: machine.VolumeData}},
	}
}

// editFiles makes the edits a user makes: a comment, a changed value, a
// new key, a new bind.
func editFiles(t *testing.T, p machine.Paths, extraBind string) {
	t.Helper()
	env, err := envfile.ReadFile(p.Env)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(env.Bytes()), "APP_MODE=prod\n", "# my mode\nAPP_MODE=debug\n", 1) + "MY_KEY=mine\n"
	if err := os.WriteFile(p.Env, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := unitfile.ReadFile(p.Settings)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add("Files", "Bind", extraBind+":/backup"); err != nil {
		t.Fatal(err)
	}
	if err := unitfile.WriteFileAtomic(p.Settings, s, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUpgradeAndRollback(t *testing.T) {
	v1, v2 := versionImages(t)
	t.Run("recorded base", func(t *testing.T) { testUpgradeAndRollback(t, v1, v2, false) })
	t.Run("machine of an older mbctl", func(t *testing.T) { testUpgradeAndRollback(t, v1, v2, true) })
}

func testUpgradeAndRollback(t *testing.T, v1, v2 *registry.Image, legacy bool) {
	o, root := testOptions(t, v1)
	o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
	o.Ports = []nspawnport.Port{{Protocol: nspawnport.TCP, Host: 8080, Container: 80}} // machines pull --publish
	created, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	p := created.Paths
	editFiles(t, p, filepath.Join(root, "backup"))
	// machines publish, later
	if _, err := machine.Publish(o.Dirs, o.Name, []nspawnport.Port{{Protocol: nspawnport.UDP, Host: 5353, Container: 53}}); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(p.StorageDir, "var/lib/app")
	if err := os.WriteFile(filepath.Join(data, "rows"), []byte("written by v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataBefore, err := tree.Snapshot(p.StorageDir)
	if err != nil {
		t.Fatal(err)
	}
	delete(dataBefore, "/var/log") // the new volume's parent appears
	settingsBefore, envBefore := readFile(t, p.Settings), readFile(t, p.Env)

	uo := upgradeOptions(o, v2)
	if !HasBase(p) {
		t.Fatal("machines pull recorded no merge base")
	}
	if legacy {
		if err := os.RemoveAll(StateDir(p)); err != nil {
			t.Fatal(err)
		}
		uo.Base = v1 // the CLI resolves the old digest
	}
	res, err := Upgrade(t.Context(), uo)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != v1.Digest.String() || res.To != v2.Digest.String() || !res.Applied {
		t.Errorf("upgrade %s -> %s applied %v", res.From, res.To, res.Applied)
	}
	if got := readFile(t, filepath.Join(p.Rootfs, "usr/share/app/version")); got != "2\n" {
		t.Errorf("rootfs version %q, want 2", got)
	}
	env := readFile(t, p.Env)
	for _, want := range []string{"# my mode\nAPP_MODE=debug\n", "APP_LEVEL=2\n", "APP_NEW=yes\n", "MY_KEY=mine\n",
		man8env.KeyDigest + "=" + v2.Digest.String() + "\n", man8env.KeyArgs + "=/bin/app --fast\n", man8env.KeyImageURL + "=test/up:2\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("upgraded env lacks %q:\n%s", want, env)
		}
	}
	settings := readFile(t, p.Settings)
	for _, want := range []string{filepath.Join(root, "backup") + ":/backup\n", filepath.Join(p.StorageDir, "var/log/app") + ":/var/log/app:idmap\n"} {
		if !strings.Contains(settings, want) {
			t.Errorf("upgraded settings lack %q:\n%s", want, settings)
		}
	}
	// Published ports are the user's: kept, once each.
	for _, want := range []string{"\nPort=tcp:8080:80\n", "\nPort=udp:5353:53\n"} {
		if strings.Count(settings, want) != 1 {
			t.Errorf("upgraded settings do not have %q once:\n%s", want, settings)
		}
	}
	if got := readFile(t, filepath.Join(p.StorageDir, "var/log/app/README")); got != "logs" {
		t.Errorf("new volume content %q", got)
	}
	if !strings.Contains(res.EnvDiff, "-APP_LEVEL=1\n+APP_LEVEL=2\n") {
		t.Errorf("env diff:\n%s", res.EnvDiff)
	}
	dataAfter, err := tree.Snapshot(p.StorageDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range tree.Diff(dataBefore, dataAfter) {
		if !strings.Contains(d, "only in the second tree") {
			t.Errorf("storage dir changed: %s", d)
		}
	}

	// One step back: the old rootfs and the files as the user left them.
	rb, err := Rollback(o.Dirs, o.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rb.From != v2.Digest.String() || rb.To != v1.Digest.String() {
		t.Errorf("rollback %s -> %s", rb.From, rb.To)
	}
	if got := readFile(t, filepath.Join(p.Rootfs, "usr/share/app/version")); got != "1\n" {
		t.Errorf("rolled back rootfs version %q", got)
	}
	if got := readFile(t, p.Settings); got != settingsBefore {
		t.Errorf("rolled back settings:\n%s\nwant:\n%s", got, settingsBefore)
	}
	if got := readFile(t, p.Env); got != envBefore {
		t.Errorf("rolled back env:\n%s\nwant:\n%s", got, envBefore)
	}
	if got := readFile(t, filepath.Join(data, "rows")); got != "written by v1" {
		t.Errorf("data %q", got)
	}
	// And forward again.
	if _, err := Rollback(o.Dirs, o.Name, nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p.Env); got != env {
		t.Errorf("second rollback env:\n%s\nwant:\n%s", got, env)
	}

	// The same digest again: a second upgrade to v2 changes only what
	// it must, and the next merge base is v2's.
	again, err := Upgrade(t.Context(), upgradeOptions(o, v2))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range again.Changes {
		if c.Action != "keep" {
			t.Errorf("upgrade to the same image changed %s", c)
		}
	}
}

// An upgrade stopped before any step or swap, by an error or a panic,
// leaves the machine exactly as it was; the same upgrade then succeeds.
// (kill -9, where no deferred rollback runs and the journal is recovered
// by the next run, is test/e2e's TestMachinesUpgradeKilled.)
func TestUpgradeInterruptedAtEveryStep(t *testing.T) {
	v1, v2 := versionImages(t)
	stops := append(UpgradeSteps(), "swap:volume", "swap:old", "swap:rootfs", "swap:files")
	for _, at := range stops {
		for _, crash := range []bool{false, true} {
			name := at
			if crash {
				name += " panic"
			}
			t.Run(name, func(t *testing.T) {
				o, root := testOptions(t, v1)
				o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
				if _, err := Create(t.Context(), o); err != nil {
					t.Fatal(err)
				}
				uo := upgradeOptions(o, v2)
				uo.Base = v1
				if at == "swap:old" {
					// A first upgrade and rollback leave a rollback point
					// to move aside (and the new volume's dir, reused).
					if _, err := Upgrade(t.Context(), uo); err != nil {
						t.Fatal(err)
					}
					if _, err := Rollback(o.Dirs, o.Name, nil); err != nil {
						t.Fatal(err)
					}
				}
				before, err := tree.Snapshot(root)
				if err != nil {
					t.Fatal(err)
				}
				stop := errors.New("stopped")
				uo.BeforeStep = func(step string) error {
					if step != at {
						return nil
					}
					if crash {
						panic(stop)
					}
					return stop
				}
				func() {
					defer func() {
						if r := recover(); r != nil && r != stop {
							panic(r)
						}
					}()
					if _, err := Upgrade(t.Context(), uo); !errors.Is(err, stop) {
						t.Fatalf("err = %v", err)
					}
				}()
				after, err := tree.Snapshot(root)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range tree.Diff(before, after) {
					// The journals' dir and the machine's lock stay.
					if !strings.HasPrefix(d, "/scratch") && !strings.HasPrefix(d, "/configs/app1/.mbctl/lock") && !strings.HasPrefix(d, "/configs/app1/.mbctl: only in the second") {
						t.Errorf("changed: %s", d)
					}
				}
				uo.BeforeStep = nil
				if _, err := Upgrade(t.Context(), uo); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// rebuild gives back the rootfs pull made, from the config dir alone.
func TestRebuild(t *testing.T) {
	v1, _ := versionImages(t)
	o, _ := testOptions(t, v1)
	o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
	created, err := Create(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	p := created.Paths
	want, err := tree.Snapshot(p.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	ro := RebuildOptions{Name: o.Name, Dirs: o.Dirs, Image: v1, Cache: o.Cache, Init: o.Init}
	for _, tt := range []struct {
		name     string
		breakIt  func() error
		replaced bool
		links    int
	}{
		{"rootfs deleted", func() error {
			if err := os.RemoveAll(p.Rootfs); err != nil {
				return err
			}
			return os.Remove(p.ImageLink)
		}, false, 1},
		{"rootfs broken", func() error { return os.Remove(filepath.Join(p.Rootfs, "bin/app")) }, true, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.breakIt(); err != nil {
				t.Fatal(err)
			}
			res, err := Rebuild(t.Context(), ro)
			if err != nil {
				t.Fatal(err)
			}
			if res.Replaced != tt.replaced || len(res.Links) != tt.links {
				t.Errorf("replaced %v, links %q", res.Replaced, res.Links)
			}
			got, err := tree.Snapshot(p.Rootfs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := tree.Diff(want, got); len(diff) > 0 {
				t.Errorf("rebuilt rootfs differs:\n%s", strings.Join(diff, "\n"))
			}
			if target, err := os.Readlink(p.ImageLink); err != nil || target != p.Rootfs {
				t.Errorf("machinectl link: %q %v", target, err)
			}
			left, _ := filepath.Glob(filepath.Join(filepath.Dir(p.Rootfs), ".*"))
			if len(left) > 0 {
				t.Errorf("left beside the rootfs: %q", left)
			}
		})
	}
}

// After remove --keep-data, pull --adopt gives the machine back: over a
// kept storage dir alone (Create with Adopt: the data is used as it is),
// or over the kept config dir too (Upgrade with Adopt: the files merged).
func TestAdopt(t *testing.T) {
	v1, v2 := versionImages(t)
	keep := func(t *testing.T, p machine.Paths, configToo bool) {
		t.Helper()
		plan, err := machine.PlanRemove(p, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := plan.Execute(); err != nil {
			t.Fatal(err)
		}
		if !configToo {
			if err := os.RemoveAll(p.ConfigDir); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("storage dir", func(t *testing.T) {
		o, _ := testOptions(t, v1)
		o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
		created, err := Create(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		p := created.Paths
		rows := filepath.Join(p.StorageDir, "var/lib/app/rows")
		if err := os.WriteFile(rows, []byte("kept"), 0o644); err != nil {
			t.Fatal(err)
		}
		keep(t, p, false)
		if _, err := Create(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--adopt") {
			t.Fatalf("pull over kept data without --adopt: %v", err)
		}
		o.Adopt, o.Image = true, v2
		o.Volumes = append(o.Volumes, machine.Volume{Path: "/var/log/app", Kind: machine.VolumeData})
		res, err := Create(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Adopted) != 1 || res.Adopted[0] != filepath.Join(p.StorageDir, "var/lib/app") {
			t.Errorf("adopted %q", res.Adopted)
		}
		if got := readFile(t, rows); got != "kept" {
			t.Errorf("kept data: %q", got)
		}
		if got := readFile(t, filepath.Join(p.StorageDir, "var/log/app/README")); got != "logs" {
			t.Errorf("new volume: %q", got)
		}
		if left, _ := filepath.Glob(filepath.Join(o.Dirs.Storage, ".*")); len(left) > 0 {
			t.Errorf("left in the storage dirs: %q", left)
		}
	})
	t.Run("config dir", func(t *testing.T) {
		o, _ := testOptions(t, v1)
		o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
		created, err := Create(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		p := created.Paths
		editFiles(t, p, "/backup")
		keep(t, p, true)
		uo := upgradeOptions(o, v2)
		uo.Adopt = true
		if _, err := Upgrade(t.Context(), uo); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(p.Rootfs, "usr/share/app/version")); got != "2\n" {
			t.Errorf("rootfs %q", got)
		}
		env := readFile(t, p.Env)
		for _, want := range []string{"APP_MODE=debug\n", "MY_KEY=mine\n", "APP_LEVEL=2\n"} {
			if !strings.Contains(env, want) {
				t.Errorf("adopted env lacks %q:\n%s", want, env)
			}
		}
		for link, target := range map[string]string{p.SettingsLink: p.Settings, p.ImageLink: p.Rootfs} {
			if got, err := os.Readlink(link); err != nil || got != target {
				t.Errorf("%s -> %q %v", link, got, err)
			}
		}
		if _, err := os.Lstat(p.Previous); err == nil {
			t.Error("an adoption left a rollback point")
		}
		if next, _ := filepath.Glob(filepath.Join(StateDir(p), ".next-*")); len(next) > 0 {
			t.Errorf("left: %q", next)
		}
	})
}

// An upgrade keeps the machine's template: a macvlan machine stays on the
// uplink it was pulled with (network.uplink changed since), and a
// host_network machine, made without a Yggdrasil subnet, gets no address.
func TestUpgradeKeepsTemplate(t *testing.T) {
	v1, v2 := versionImages(t)
	for _, tt := range []struct {
		tmpl     string
		want     []string
		wantNone string
	}{
		{man8env.TemplateMacvlan, []string{"MACVLAN=enp3s0\n", "Bridge=srvgrp0\n"}, "MACVLAN=other0"},
		{man8env.TemplateHostNetwork, []string{"VirtualEthernet=no\n"}, "Bridge="},
	} {
		t.Run(tt.tmpl, func(t *testing.T) {
			o, _ := testOptions(t, v1)
			o.Template, o.Uplink = tt.tmpl, "enp3s0"
			o.Volumes = []machine.Volume{{Path: "/var/lib/app", Kind: machine.VolumeData}}
			if tt.tmpl == man8env.TemplateHostNetwork {
				o.Subnet, o.Uplink = netip.Prefix{}, ""
			}
			created, err := Create(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			uo := upgradeOptions(o, v2)
			uo.Uplink = "other0"
			if _, err := Upgrade(t.Context(), uo); err != nil {
				t.Fatal(err)
			}
			settings, env := readFile(t, created.Paths.Settings), readFile(t, created.Paths.Env)
			for _, w := range tt.want {
				if !strings.Contains(settings, w) {
					t.Errorf("upgraded settings lack %q:\n%s", w, settings)
				}
			}
			if strings.Contains(settings, tt.wantNone) {
				t.Errorf("upgraded settings have %q:\n%s", tt.wantNone, settings)
			}
			if !strings.Contains(env, man8env.KeyTemplate+"="+tt.tmpl+"\n") {
				t.Errorf("upgraded env lost the template:\n%s", env)
			}
			if hasAddr := strings.Contains(env, man8env.KeyYggAddress); hasAddr != man8env.HasOwnNetwork(tt.tmpl) {
				t.Errorf("upgraded env has %s: %v\n%s", man8env.KeyYggAddress, hasAddr, env)
			}
		})
	}
}
