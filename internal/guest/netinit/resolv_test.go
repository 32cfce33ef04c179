package netinit

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestRenderResolvConf(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		name    string
		servers []netip.Addr
		search  []string
		want    string
	}{
		{name: "no servers leaves the file alone", servers: nil, search: []string{"example.org"}, want: ""},
		{name: "one server", servers: []netip.Addr{a("198.18.1.1")},
			want: "# Written by man8s-init from the DHCPv4 lease on host0.\nnameserver 198.18.1.1\n"},
		{name: "search domains cleaned", servers: []netip.Addr{a("198.18.1.1")}, search: []string{"lan.", " ", "bad domain", "example.org"},
			want: "# Written by man8s-init from the DHCPv4 lease on host0.\nnameserver 198.18.1.1\nsearch lan example.org\n"},
		{name: "at most three servers", servers: []netip.Addr{a("198.18.1.1"), a("198.18.1.2"), a("198.18.1.3"), a("198.18.1.4")},
			want: "# Written by man8s-init from the DHCPv4 lease on host0.\nnameserver 198.18.1.1\nnameserver 198.18.1.2\nnameserver 198.18.1.3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(RenderResolvConf("host0", tt.servers, tt.search)); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteResolvConf(t *testing.T) {
	const content = "nameserver 198.18.1.1\n"
	tests := []struct {
		name string
		// setup builds the machine's root; outside is a host dir next to it.
		setup     func(t *testing.T, root, outside string)
		wantPath  string // inside the root
		wantLinks map[string]string
		// hostSees: the host resolves the machine's links the same way
		// (no absolute or escaping links), so reading through them works.
		hostSees bool
	}{
		{name: "missing file", setup: func(t *testing.T, root, _ string) {}, wantPath: "/etc/resolv.conf", hostSees: true},
		{name: "regular file from copy-stub", setup: func(t *testing.T, root, _ string) {
			write(t, filepath.Join(root, "etc/resolv.conf"), "nameserver 127.0.0.53\n")
		}, wantPath: "/etc/resolv.conf", hostSees: true},
		{name: "relative link to resolved's stub, target missing", setup: func(t *testing.T, root, _ string) {
			link(t, "../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf"))
		}, wantPath: "/run/systemd/resolve/stub-resolv.conf",
			wantLinks: map[string]string{"etc/resolv.conf": "../run/systemd/resolve/stub-resolv.conf"}, hostSees: true},
		{name: "absolute link stays inside the root", setup: func(t *testing.T, root, outside string) {
			write(t, filepath.Join(outside, "resolv.conf"), "host file\n")
			link(t, filepath.Join(outside, "resolv.conf"), filepath.Join(root, "etc/resolv.conf"))
		}, wantPath: "" /* computed: the outside path, inside the root */},
		{name: "dot-dot cannot leave the root", setup: func(t *testing.T, root, _ string) {
			link(t, "../../../../../../resolv.conf", filepath.Join(root, "etc/resolv.conf"))
		}, wantPath: "/resolv.conf"},
		{name: "chain of links", setup: func(t *testing.T, root, _ string) {
			link(t, "/run/resolv.conf", filepath.Join(root, "etc/resolv.conf"))
			link(t, "real/resolv.conf", filepath.Join(root, "run/resolv.conf"))
		}, wantPath: "/run/real/resolv.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
			for _, d := range []string{root + "/etc", root + "/run", outside} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			tt.setup(t, root, outside)
			want := tt.wantPath
			if want == "" {
				want = filepath.Join(outside, "resolv.conf")
			}
			got, err := WriteResolvConf(root, "/etc/resolv.conf", []byte(content))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("wrote %s, want %s", got, want)
			}
			if b, err := os.ReadFile(filepath.Join(root, want)); err != nil || string(b) != content {
				t.Errorf("content of %s = %q, %v", want, b, err)
			}
			// The machine reads the new content through its resolv.conf.
			if b, err := os.ReadFile(filepath.Join(root, "etc/resolv.conf")); tt.hostSees && (err != nil || string(b) != content) {
				t.Errorf("machine reads %q, %v", b, err)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "resolv.conf")); len(b) > 0 && string(b) != "host file\n" {
				t.Errorf("a file outside the root was changed: %q", b)
			}
			for l, target := range tt.wantLinks {
				if got, err := os.Readlink(filepath.Join(root, l)); err != nil || got != target {
					t.Errorf("link %s = %q, %v; want it kept as %q", l, got, err, target)
				}
			}
			if m, _ := filepath.Glob(filepath.Join(root, filepath.Dir(want), ".resolv.conf.man8s-*")); len(m) > 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}
}

func TestWriteResolvConfLoop(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	link(t, "/etc/b", filepath.Join(root, "etc/resolv.conf"))
	link(t, "/etc/resolv.conf", filepath.Join(root, "etc/b"))
	if _, err := WriteResolvConf(root, "/etc/resolv.conf", []byte("x")); err == nil {
		t.Error("a symlink loop was followed without error")
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}
