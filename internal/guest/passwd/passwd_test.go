package passwd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// The expectations are what Docker gives the process (moby's getUser over
// runc's GetExecUser), case by case.
func TestLookup(t *testing.T) {
	root := writeRoot(t, map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"# comment\n" +
			"nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n" +
			"broken line\n" +
			"bad:x:notanumber:1::/bad:/bin/sh\n" +
			"app:x:1000:1000::/home/app:/bin/sh\r\n" +
			"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n" +
			"short:x:3000:3000\n" +
			"4321:x:77:77::/home/named-by-a-number:/bin/sh\n" +
			"dup:x:500:500::/first:/bin/sh\n" +
			"dup:x:501:501::/second:/bin/sh\n",
		"group": "root:x:0:\n" +
			"wheel:x:10:root,app\n" +
			"nginx:x:101:\n" +
			"www-data:x:33:nginx,app\n" +
			"app:x:1000:\n" +
			"video:x:44:app\n" +
			"nonroot:x:65532:\n" +
			"extra:x:2000:nonroot\n" +
			"broken\n",
	})

	tests := []struct {
		spec string
		want User
	}{
		// No USER: uid 0 and root's entry, memberships included.
		{"", User{Name: "root", Home: "/root", Groups: []uint32{0, 10}}},
		{"root", User{Name: "root", Home: "/root", Groups: []uint32{0, 10}}},
		// A name: uid, gid and home from passwd; memberships by name.
		{"nonroot", User{Name: "nonroot", UID: 65532, GID: 65532, Home: "/home/nonroot", Groups: []uint32{65532, 2000}}},
		{"nginx", User{Name: "nginx", UID: 101, GID: 101, Home: "/var/cache/nginx", Groups: []uint32{101, 33}}},
		{"app", User{Name: "app", UID: 1000, GID: 1000, Home: "/home/app", Groups: []uint32{1000, 10, 33, 44}}},
		// A number with an entry is that entry.
		{"65532", User{Name: "nonroot", UID: 65532, GID: 65532, Home: "/home/nonroot", Groups: []uint32{65532, 2000}}},
		// Leading zeros are the same number.
		{"0101", User{Name: "nginx", UID: 101, GID: 101, Home: "/var/cache/nginx", Groups: []uint32{101, 33}}},
		// A number without one: gid 0, home "/", no memberships.
		{"1234", User{UID: 1234, Home: "/", Groups: []uint32{0}}},
		{"1234:1234", User{UID: 1234, GID: 1234, Home: "/", Groups: []uint32{1234}}},
		{"1234:extra", User{UID: 1234, GID: 2000, Home: "/", Groups: []uint32{2000}}},
		// A number is always a uid, never a name.
		{"4321", User{UID: 4321, Home: "/", Groups: []uint32{0}}},
		// An explicit group sets the gid, and the group file adds nothing.
		{"nonroot:extra", User{Name: "nonroot", UID: 65532, GID: 2000, Home: "/home/nonroot", Groups: []uint32{2000}}},
		{"nonroot:2001", User{Name: "nonroot", UID: 65532, GID: 2001, Home: "/home/nonroot", Groups: []uint32{2001}}},
		{"app:video", User{Name: "app", UID: 1000, GID: 44, Home: "/home/app", Groups: []uint32{44}}},
		{"nginx:33", User{Name: "nginx", UID: 101, GID: 33, Home: "/var/cache/nginx", Groups: []uint32{33}}},
		{":extra", User{Name: "root", GID: 2000, Home: "/root", Groups: []uint32{2000}}},
		// An empty group is no group.
		{"nonroot:", User{Name: "nonroot", UID: 65532, GID: 65532, Home: "/home/nonroot", Groups: []uint32{65532, 2000}}},
		// A line without a home field gives an empty home, as in Docker.
		{"short", User{Name: "short", UID: 3000, GID: 3000, Groups: []uint32{3000}}},
		// The first matching line wins.
		{"dup", User{Name: "dup", UID: 500, GID: 500, Home: "/first", Groups: []uint32{500}}},
	}
	for _, tt := range tests {
		got, err := Lookup(root, tt.spec)
		if err != nil {
			t.Errorf("Lookup(%q): %v", tt.spec, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tt.spec, diff)
		}
	}
}

func TestLookupErrors(t *testing.T) {
	root := writeRoot(t, map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nbad:x:notanumber:1::/bad:/bin/sh\n",
		"group":  "root:x:0:\n",
	})
	tests := []struct {
		spec string
		want []string // in the error, in order
	}{
		{"nobody-here", []string{`user "nobody-here" is not in ` + filepath.Join(root, "etc/passwd"), "add it to the image's /etc/passwd, or use a numeric uid"}},
		{"bad", []string{`user "bad" is not in`}},
		{"root:nogroup", []string{`group "nogroup" is not in ` + filepath.Join(root, "etc/group"), "add it to the image's /etc/group, or use a numeric gid"}},
		{"2147483648", []string{`"2147483648" is not an id from 0 to 2147483647`}},
		{"-1", []string{`"-1" is not an id`}},
		{"99999999999", []string{"is not an id"}},
		{"root:-5", []string{`group "root:-5"`, `"-5" is not an id`}},
		{"a:b:c", []string{`user "a:b:c": want USER, USER:GROUP, UID or UID:GID`}},
	}
	for _, tt := range tests {
		_, err := Lookup(root, tt.spec)
		if err == nil {
			t.Errorf("Lookup(%q) succeeded, want an error", tt.spec)
			continue
		}
		rest := err.Error()
		for _, w := range tt.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("Lookup(%q) error %q lacks %q", tt.spec, err, w)
				break
			}
			rest = rest[i+len(w):]
		}
	}
}

// Without the files (an image FROM scratch): numbers work, names fail
// saying that the file is missing, and no USER is root with home "/".
func TestLookupWithoutFiles(t *testing.T) {
	root := t.TempDir()
	for spec, want := range map[string]User{
		"":          {Home: "/", Groups: []uint32{0}},
		"1234":      {UID: 1234, Home: "/", Groups: []uint32{0}},
		"1234:5678": {UID: 1234, GID: 5678, Home: "/", Groups: []uint32{5678}},
	} {
		got, err := Lookup(root, spec)
		if err != nil {
			t.Errorf("Lookup(%q): %v", spec, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", spec, diff)
		}
	}
	for spec, want := range map[string]string{
		"nonroot":      filepath.Join(root, "etc/passwd") + " (the file does not exist)",
		"1234:nogroup": filepath.Join(root, "etc/group") + " (the file does not exist)",
	} {
		if _, err := Lookup(root, spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q) error = %v, want one naming %s", spec, err, want)
		}
	}
}
