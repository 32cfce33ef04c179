package passwd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLookup(t *testing.T) {
	root := t.TempDir()
	write := func(name, content string) {
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", "root:x:0:0:root:/root:/bin/sh\n# comment\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\nbroken line\napp:x:1000:1000::/home/app:/bin/sh\n")
	write("group", "root:x:0:\nnginx:x:101:\nwww-data:x:33:nginx,app\napp:x:1000:\nvideo:x:44:app\n")

	tests := []struct {
		spec string
		want User
		ok   bool
	}{
		{"root", User{Name: "root", Home: "/root"}, true},
		{"nginx", User{Name: "nginx", UID: 101, GID: 101, Home: "/var/cache/nginx", Groups: []uint32{33}}, true},
		{"1000", User{Name: "app", UID: 1000, GID: 1000, Home: "/home/app", Groups: []uint32{33, 44}}, true},
		{"app:video", User{Name: "app", UID: 1000, GID: 44, Home: "/home/app", Groups: []uint32{33}}, true},
		{"4242", User{UID: 4242, Home: "/"}, true},
		{"4242:7", User{UID: 4242, GID: 7, Home: "/"}, true},
		{"nginx:33", User{Name: "nginx", UID: 101, GID: 33, Home: "/var/cache/nginx"}, true},
		{"nobody", User{}, false},
		{"app:nogroup", User{}, false},
		{"", User{}, false},
		{"app:", User{}, false},
		{"99999999999", User{}, false},
	}
	for _, tt := range tests {
		got, err := Lookup(root, tt.spec)
		if (err == nil) != tt.ok {
			t.Errorf("Lookup(%q) error = %v, want ok=%v", tt.spec, err, tt.ok)
			continue
		}
		if diff := cmp.Diff(tt.want, got); tt.ok && diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tt.spec, diff)
		}
	}
}
