package initinstall

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/man8s/mbctl/internal/testbed/ci"

	"github.com/man8s/mbctl/internal/testbed/ociimage"
)

// binaries returns a static and a dynamic executable of this host.
func binaries(t *testing.T) (static, dynamic string) {
	t.Helper()
	static = ociimage.StaticBusyboxT(t)
	for _, c := range []string{"/bin/ls", "/usr/bin/env", "/bin/sh"} {
		if s, err := IsStatic(c); err == nil && !s {
			return static, c
		}
	}
	ci.Skip(t, "no dynamically linked executable on this host")
	return
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func noLookPath(string) (string, error) { return "", exec.ErrNotFound }

func TestLocateInit(t *testing.T) {
	static, dynamic := binaries(t)
	tests := []struct {
		name     string
		layout   map[string]string // path under the prefix -> source binary
		exe      string            // the running mbctl, under the prefix
		cfgInit  string            // under the prefix
		wantPath string            // under the prefix
		wantFrom string
		wantErr  string
	}{
		{name: "beside mbctl", layout: map[string]string{"bin/mbctl": static, "bin/man8s-init": static, "lib/man8s/man8s-init": static},
			exe: "bin/mbctl", wantPath: "bin/man8s-init", wantFrom: FromBeside},
		{name: "prefix lib", layout: map[string]string{"bin/mbctl": static, "lib/man8s/man8s-init": static},
			exe: "bin/mbctl", wantPath: "lib/man8s/man8s-init", wantFrom: FromLib},
		{name: "configured wins", layout: map[string]string{"bin/mbctl": static, "bin/man8s-init": static, "opt/init": static},
			exe: "bin/mbctl", cfgInit: "opt/init", wantPath: "opt/init", wantFrom: FromConfig},
		{name: "multi-call", layout: map[string]string{"bin/mbctl": static},
			exe: "bin/mbctl", wantPath: "bin/mbctl", wantFrom: FromMultiCall},
		{name: "dynamic mbctl cannot serve", layout: map[string]string{"bin/mbctl": dynamic},
			exe: "bin/mbctl", wantErr: "dynamically linked"},
		{name: "dynamic init beside", layout: map[string]string{"bin/mbctl": static, "bin/man8s-init": dynamic},
			exe: "bin/mbctl", wantErr: "man8s-init beside mbctl"},
		{name: "configured missing", layout: map[string]string{"bin/mbctl": static},
			exe: "bin/mbctl", cfgInit: "opt/none", wantErr: "configured man8s-init"},
		{name: "configured dynamic", layout: map[string]string{"bin/mbctl": static, "opt/init": dynamic},
			exe: "bin/mbctl", cfgInit: "opt/init", wantErr: "dynamically linked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := t.TempDir()
			for p, src := range tt.layout {
				copyFile(t, src, filepath.Join(prefix, p))
			}
			cfgInit := ""
			if tt.cfgInit != "" {
				cfgInit = filepath.Join(prefix, tt.cfgInit)
			}
			src, err := locate(filepath.Join(prefix, tt.exe), cfgInit, "", noLookPath)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("locate = %+v, %v; want an error containing %q", src, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if src.Init != filepath.Join(prefix, tt.wantPath) || src.InitFrom != tt.wantFrom {
				t.Errorf("locate = %+v, want %s (%s)", src, tt.wantPath, tt.wantFrom)
			}
		})
	}
}

func TestLocateBusybox(t *testing.T) {
	static, dynamic := binaries(t)
	dir := t.TempDir()
	copyFile(t, static, filepath.Join(dir, "bin/mbctl"))
	exe := filepath.Join(dir, "bin/mbctl")
	onPath := func(p string) func(string) (string, error) {
		return func(name string) (string, error) {
			if name != "busybox" {
				t.Errorf("looked up %q", name)
			}
			if p == "" {
				return "", exec.ErrNotFound
			}
			return p, nil
		}
	}
	tests := []struct {
		name, cfg string
		lookPath  func(string) (string, error)
		want      string
	}{
		{"configured static", static, onPath(""), static},
		{"configured dynamic, static on PATH", dynamic, onPath(static), static},
		{"configured missing, static on PATH", "/nonexistent/busybox", onPath(static), static},
		{"only dynamic", dynamic, onPath(dynamic), ""},
		{"none", "", onPath(""), ""},
	}
	for _, tt := range tests {
		src, err := locate(exe, "", tt.cfg, tt.lookPath)
		if err != nil || src.Busybox != tt.want {
			t.Errorf("%s: Busybox = %q, %v; want %q", tt.name, src.Busybox, err, tt.want)
		}
	}
}

// TestLocateRunning checks the real entry point with a configured init.
func TestLocateRunning(t *testing.T) {
	static, _ := binaries(t)
	src, err := Locate(static, static, noLookPath)
	want := Sources{Init: static, InitFrom: FromConfig, Busybox: static}
	if err != nil || src != want {
		t.Errorf("Locate = %+v, %v; want %+v", src, err, want)
	}
}

// fakeSources writes small files standing in for the binaries.
func fakeSources(t *testing.T, busybox bool) Sources {
	t.Helper()
	dir := t.TempDir()
	src := Sources{Init: filepath.Join(dir, "init"), InitFrom: FromConfig}
	if err := os.WriteFile(src.Init, []byte("INIT v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if busybox {
		src.Busybox = filepath.Join(dir, "busybox")
		if err := os.WriteFile(src.Busybox, []byte("BUSYBOX"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestInstall(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, root string)
		busybox   bool
		wantLink  bool
		wantSh    string // what /bin/sh reads as afterwards ("" : none)
		wantBinLn bool   // /bin stays a symbolic link
	}{
		{name: "distroless, no /bin", busybox: true, wantLink: true, wantSh: "BUSYBOX"},
		{name: "empty /bin", setup: func(t *testing.T, root string) { mkdir(t, root, "bin") }, busybox: true, wantLink: true, wantSh: "BUSYBOX"},
		{name: "image has a shell", setup: func(t *testing.T, root string) { write(t, root, "bin/sh", "DASH") }, busybox: true, wantSh: "DASH"},
		{name: "image shell is a link", setup: func(t *testing.T, root string) {
			write(t, root, "bin/dash", "DASH")
			symlink(t, "dash", root, "bin/sh")
		}, busybox: true, wantSh: "DASH"},
		{name: "merged usr", setup: func(t *testing.T, root string) {
			mkdir(t, root, "usr/bin")
			symlink(t, "usr/bin", root, "bin")
		}, busybox: true, wantLink: true, wantSh: "BUSYBOX", wantBinLn: true},
		{name: "dangling /bin/sh is left alone", setup: func(t *testing.T, root string) {
			mkdir(t, root, "bin")
			symlink(t, "/bin/bash", root, "bin/sh")
		}, busybox: true},
		{name: "no busybox, no link", busybox: false},
		{name: "earlier install is replaced", setup: func(t *testing.T, root string) {
			write(t, root, "man8s-init/man8s-init", "INIT v0")
			write(t, root, "man8s-init/busybox", "OLD")
			symlink(t, "/man8s-init/busybox", root, "bin/sh")
		}, busybox: true, wantSh: "BUSYBOX"},
		{name: "/man8s-init is a file", setup: func(t *testing.T, root string) { write(t, root, "man8s-init", "junk") }, busybox: true, wantLink: true, wantSh: "BUSYBOX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			mkdir(t, root, "")
			if tt.setup != nil {
				tt.setup(t, root)
			}
			src := fakeSources(t, tt.busybox)
			res, err := Install(root, src)
			if err != nil {
				t.Fatal(err)
			}
			// Only the merged-usr tree has a /usr of its own.
			want := Result{Init: InitPath, ShellLink: tt.wantLink, MadeUsr: !tt.wantBinLn}
			if tt.busybox {
				want.Busybox = BusyboxPath
			}
			if res != want {
				t.Errorf("Install = %+v, want %+v", res, want)
			}
			if got := readFile(t, filepath.Join(root, "man8s-init/man8s-init")); got != "INIT v1" {
				t.Errorf("man8s-init holds %q", got)
			}
			for _, p := range []string{"man8s-init", "man8s-init/man8s-init"} {
				fi, err := os.Lstat(filepath.Join(root, p))
				if err != nil || fi.Mode().Perm() != 0o755 {
					t.Errorf("%s: %v, %v; want mode 0755", p, fi.Mode(), err)
				}
			}
			if tt.busybox {
				if got := readFile(t, filepath.Join(root, "man8s-init/busybox")); got != "BUSYBOX" {
					t.Errorf("busybox holds %q", got)
				}
			}
			if tt.wantLink {
				target, err := os.Readlink(filepath.Join(root, "bin/sh"))
				if err != nil || target != BusyboxPath {
					t.Errorf("/bin/sh -> %q, %v; want %s", target, err, BusyboxPath)
				}
			}
			if tt.wantSh != "" {
				// Read through the links as the machine would see them.
				got := readInRoot(t, root, "/bin/sh")
				if got != tt.wantSh {
					t.Errorf("/bin/sh reads %q, want %q", got, tt.wantSh)
				}
			}
			if fi, err := os.Lstat(filepath.Join(root, "bin")); err == nil && (fi.Mode()&os.ModeSymlink != 0) != tt.wantBinLn {
				t.Errorf("/bin mode %v, want a link: %v", fi.Mode(), tt.wantBinLn)
			}
			entries, _ := os.ReadDir(filepath.Join(root, "man8s-init"))
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp") {
					t.Errorf("temporary file left: %s", e.Name())
				}
			}
		})
	}
}

// readInRoot reads p inside root, resolving absolute links inside it.
func readInRoot(t *testing.T, root, p string) string {
	t.Helper()
	for range 10 {
		full := filepath.Join(root, p)
		target, err := os.Readlink(full)
		if err != nil {
			break
		}
		if filepath.IsAbs(target) {
			p = target
		} else {
			p = filepath.Join(filepath.Dir(p), target)
		}
	}
	return readFile(t, filepath.Join(root, p))
}

func mkdir(t *testing.T, root, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, root, p, content string) {
	t.Helper()
	mkdir(t, root, filepath.Dir(p))
	if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, root, p string) {
	t.Helper()
	mkdir(t, root, filepath.Dir(p))
	if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
		t.Fatal(err)
	}
}

// TestInstallNeverWritesOutside plants links in a hostile rootfs that point
// at a host directory with a sentinel file; nothing outside the rootfs may
// change.
func TestInstallNeverWritesOutside(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root, host string)
		err   string // "" if Install succeeds
	}{
		{"/man8s-init links to a host dir", func(t *testing.T, root, host string) {
			symlink(t, host, root, "man8s-init")
		}, ""},
		{"/man8s-init links up and out", func(t *testing.T, root, host string) {
			rel, _ := filepath.Rel(root, host)
			symlink(t, rel, root, "man8s-init")
		}, ""},
		{"/man8s-init/man8s-init links to a host file", func(t *testing.T, root, host string) {
			mkdir(t, root, "man8s-init")
			symlink(t, filepath.Join(host, "sentinel"), root, "man8s-init/man8s-init")
			symlink(t, filepath.Join(host, "sentinel"), root, "man8s-init/busybox")
		}, ""},
		{"/bin links to a host dir", func(t *testing.T, root, host string) {
			symlink(t, host, root, "bin")
		}, "/bin is a link to a directory that does not exist"},
		{"/bin links up and out", func(t *testing.T, root, host string) {
			rel, _ := filepath.Rel(root, host)
			symlink(t, rel, root, "bin")
		}, "/bin is a link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, host := filepath.Join(base, "rootfs"), filepath.Join(base, "host")
			mkdir(t, root, "")
			write(t, host, "sentinel", "HOST")
			tt.setup(t, root, host)
			_, err := Install(root, fakeSources(t, true))
			if tt.err == "" && err != nil {
				t.Errorf("Install: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("Install = %v, want an error containing %q", err, tt.err)
			}
			entries, _ := os.ReadDir(host)
			if len(entries) != 1 || readFile(t, filepath.Join(host, "sentinel")) != "HOST" {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("the host dir changed: %q", names)
			}
			if tt.err == "" {
				if got := readFile(t, filepath.Join(root, "man8s-init/man8s-init")); got != "INIT v1" {
					t.Errorf("man8s-init holds %q", got)
				}
				if fi, err := os.Lstat(filepath.Join(root, "man8s-init")); err != nil || !fi.IsDir() {
					t.Errorf("/man8s-init is %v, %v; want a real directory", fi.Mode(), err)
				}
			}
		})
	}
}

// TestInstallUsr: a tree without /usr gets an empty one, 0755 and owned by
// root, and nothing else; a /usr of the image stays as it is.
func TestInstallUsr(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		made    bool
		err     string // "" if Install succeeds
		usrMode os.FileMode
	}{
		{name: "FROM scratch: no /usr", made: true, usrMode: os.ModeDir | 0o755},
		{name: "/usr of the image", setup: func(t *testing.T, root string) {
			write(t, root, "usr/bin/app", "APP")
			if err := os.Chmod(filepath.Join(root, "usr"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, usrMode: os.ModeDir | 0o700},
		{name: "/usr is a link", setup: func(t *testing.T, root string) {
			mkdir(t, root, "opt/usr")
			symlink(t, "opt/usr", root, "usr")
		}, usrMode: os.ModeSymlink | 0o777},
		{name: "/usr is a dangling link", setup: func(t *testing.T, root string) {
			symlink(t, "/nowhere", root, "usr")
		}, usrMode: os.ModeSymlink | 0o777},
		{name: "/usr is a file", setup: func(t *testing.T, root string) {
			write(t, root, "usr", "junk")
		}, err: "/usr is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			mkdir(t, root, "")
			if tt.setup != nil {
				tt.setup(t, root)
			}
			var before []string
			filepath.WalkDir(filepath.Join(root, "usr"), func(p string, _ os.DirEntry, _ error) error {
				before = append(before, p)
				return nil
			})
			old := syscall.Umask(0o077) // the new dir's mode must not depend on it
			res, err := Install(root, fakeSources(t, false))
			syscall.Umask(old)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), root) {
					t.Fatalf("Install = %v, want an error naming %s and containing %q", err, root, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.MadeUsr != tt.made {
				t.Errorf("MadeUsr = %v, want %v", res.MadeUsr, tt.made)
			}
			fi, err := os.Lstat(filepath.Join(root, "usr"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.usrMode {
				t.Errorf("/usr mode %v, want %v", fi.Mode(), tt.usrMode)
			}
			if tt.made {
				st := fi.Sys().(*syscall.Stat_t)
				if os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
					t.Errorf("/usr owned by %d:%d, want 0:0", st.Uid, st.Gid)
				}
				if ents, err := os.ReadDir(filepath.Join(root, "usr")); err != nil || len(ents) != 0 {
					t.Errorf("/usr holds %v (%v), want nothing", ents, err)
				}
				return
			}
			var after []string
			filepath.WalkDir(filepath.Join(root, "usr"), func(p string, _ os.DirEntry, _ error) error {
				after = append(after, p)
				return nil
			})
			if !slices.Equal(before, after) {
				t.Errorf("/usr changed: %q, was %q", after, before)
			}
		})
	}
	// A second install leaves the /usr it made alone.
	root := t.TempDir()
	if res, err := Install(root, fakeSources(t, false)); err != nil || !res.MadeUsr {
		t.Fatalf("first Install = %+v, %v", res, err)
	}
	if res, err := Install(root, fakeSources(t, false)); err != nil || res.MadeUsr {
		t.Errorf("second Install = %+v, %v; want MadeUsr false", res, err)
	}
}

func TestInstallErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := Install(missing, fakeSources(t, false)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Install into a missing rootfs = %v, want an error naming it", err)
	}
	root := t.TempDir()
	src := fakeSources(t, false)
	src.Init = filepath.Join(t.TempDir(), "absent")
	_, err := Install(root, src)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), InitPath) {
		t.Errorf("Install of a missing init = %v, want ErrNotExist naming %s", err, InitPath)
	}
	if _, err := Install(root, Sources{}); err == nil {
		t.Error("Install without an init succeeded")
	}
}

// TestInstallWhileRunning replaces a binary that is being executed: the
// rename must not fail with ETXTBSY and the running copy keeps working.
func TestInstallWhileRunning(t *testing.T) {
	static, _ := binaries(t)
	root := t.TempDir()
	src := Sources{Init: static, Busybox: static}
	if _, err := Install(root, src); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "man8s-init/busybox"), "sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if _, err := Install(root, src); err != nil {
		t.Fatalf("reinstall while running: %v", err)
	}
	out, err := exec.Command(filepath.Join(root, "man8s-init/busybox"), "echo", "ok").Output()
	if err != nil || !bytes.Equal(out, []byte("ok\n")) {
		t.Errorf("new busybox: %q, %v", out, err)
	}
}
