package secret

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
)

const testSettings = "# my settings\n[Exec]\nParameters=/man8s-init/man8s-init\n\n[Files]\n# the env file\nBind=/x/man8env.env:/man8env.env:idmap\n\n[Network]\nVirtualEthernet=yes\n"

// testMachine makes machine web's config dir with settings and returns
// its store and paths.
func testMachine(t *testing.T, settings string) (Store, machine.Paths) {
	t.Helper()
	root := t.TempDir()
	p := machine.PathsFor(config.Paths{Machines: filepath.Join(root, "machines"), Configs: filepath.Join(root, "configs"),
		Storage: filepath.Join(root, "storage"), Nspawn: filepath.Join(root, "nspawn"), Machinectl: filepath.Join(root, "machinectl")}, "web")
	if err := os.MkdirAll(p.ConfigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Settings, []byte(settings), 0o640); err != nil {
		t.Fatal(err)
	}
	return For(p), p
}

func names(t *testing.T, s Store) []string {
	t.Helper()
	n, err := s.Names()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSetListRemove(t *testing.T) {
	s, p := testMachine(t, testSettings)
	if got := names(t, s); len(got) != 0 {
		t.Fatalf("a new machine has secrets %v", got)
	}
	res, err := s.Set("DB_PASSWORD", []byte("hunter2\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantBind := "BindReadOnly=" + s.Dir() + ":/run/secrets:idmap"
	if res.Replaced || res.BindAdded != wantBind {
		t.Errorf("first Set = %+v, want the bind %q added", res, wantBind)
	}
	if res, err = s.Set("DB_PASSWORD", []byte("second")); err != nil || !res.Replaced || res.BindAdded != "" {
		t.Errorf("second Set = %+v, %v; want Replaced and no bind", res, err)
	}
	if _, err := s.Set("api_token", nil); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "DB_PASSWORD" || list[0].Size != 6 || list[1].Name != "api_token" || list[1].Size != 0 || list[0].Modified.IsZero() {
		t.Errorf("List = %+v", list)
	}
	if got, _ := os.ReadFile(filepath.Join(s.Dir(), "DB_PASSWORD")); string(got) != "second" {
		t.Errorf("stored value %q, want the second one, bytes as given", got)
	}

	// Modes: dir 0700, files 0600; the settings keep their mode.
	for path, want := range map[string]fs.FileMode{s.Dir(): fs.ModeDir | DirMode, filepath.Join(s.Dir(), "DB_PASSWORD"): FileMode, filepath.Join(s.Dir(), "api_token"): FileMode, p.Settings: 0o640} {
		if fi, err := os.Lstat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode(), err, want)
		}
	}
	// The bind was added once, to [Files], and nothing else changed.
	settings, _ := os.ReadFile(p.Settings)
	want := strings.Replace(testSettings, ":idmap\n\n", ":idmap\n"+wantBind+"\n\n", 1)
	if diff := cmp.Diff(want, string(settings)); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}

	// Remove: a missing name among them removes nothing and is named.
	err = s.Remove("api_token", "NOPE", "GONE")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "NOPE, GONE") || strings.Contains(err.Error(), "api_token") {
		t.Errorf("Remove with missing names: %v", err)
	}
	if got := names(t, s); !cmp.Equal(got, []string{"DB_PASSWORD", "api_token"}) {
		t.Errorf("after the failed Remove: %v", got)
	}
	if err := s.Remove("api_token", "DB_PASSWORD"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s); len(got) != 0 {
		t.Errorf("after Remove: %v", got)
	}
	if err := s.Remove("DB_PASSWORD"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "machine web has no secret DB_PASSWORD") {
		t.Errorf("second Remove: %v", err)
	}
}

func TestBadNamesAndValues(t *testing.T) {
	s, _ := testMachine(t, testSettings)
	tests := []struct {
		name, key string
		value     []byte
		want      string
	}{
		{"empty name", "", []byte("v"), "empty"},
		{"digit first", "1PASS", []byte("v"), "not an environment variable name"},
		{"dash", "DB-PASS", []byte("v"), "not an environment variable name"},
		{"path", "../x", []byte("v"), "not an environment variable name"},
		{"dot file", ".x", []byte("v"), "not an environment variable name"},
		{"Man8S's own", "MAN8S_APPLICATION_ARGS", []byte("v"), "MAN8S_ names are Man8S's own"},
		{"NUL", "OK", []byte("a\x00b"), "NUL"},
		{"too big", "OK", make([]byte, man8env.MaxSecretSize+1), "larger than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Set(tt.key, tt.value)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Set(%q) = %v, want an error with %q", tt.key, err, tt.want)
			}
			if err != nil && len(tt.value) > 1 && strings.Contains(err.Error(), string(tt.value)) {
				t.Errorf("the error shows the value: %v", err)
			}
			if tt.key != "OK" {
				if err := s.Remove(tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Remove(%q) = %v, want an error with %q", tt.key, err, tt.want)
				}
			}
		})
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused Sets created the secrets dir: %v", err)
	}
	// The largest value is fine.
	if _, err := s.Set("BIG", []byte(strings.Repeat("x", man8env.MaxSecretSize))); err != nil {
		t.Error(err)
	}
}

// Set replaces a value by renaming a new file over it: a reader that has
// the old file open reads the whole old value, a new reader the new one,
// and nothing else is left in the dir (a killed write's temp file is
// cleaned up too).
func TestSetIsAtomic(t *testing.T) {
	s, _ := testMachine(t, testSettings)
	if _, err := s.Set("TOKEN", []byte("old value")); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(filepath.Join(s.Dir(), "TOKEN"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	stale := filepath.Join(s.Dir(), ".TOKEN.tmp123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set("TOKEN", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(old); string(b) != "old value" {
		t.Errorf("the open old file reads %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Dir(), "TOKEN")); string(b) != "new" {
		t.Errorf("the file reads %q", b)
	}
	ents, _ := os.ReadDir(s.Dir())
	if len(ents) != 1 {
		t.Errorf("secrets dir holds %v, want only TOKEN", ents)
	}
}

func TestSetRefusesWhatIsNotTheirs(t *testing.T) {
	t.Run("symlink in place of a secret", func(t *testing.T) {
		s, _ := testMachine(t, testSettings)
		if _, err := s.Set("A", []byte("a")); err != nil {
			t.Fatal(err)
		}
		outside := filepath.Join(t.TempDir(), "outside")
		if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(s.Dir(), "LINK")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Set("LINK", []byte("x")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Set over a symlink: %v", err)
		}
		if b, _ := os.ReadFile(outside); string(b) != "keep" {
			t.Errorf("the symlink's target was written: %q", b)
		}
		if got := names(t, s); !cmp.Equal(got, []string{"A"}) {
			t.Errorf("List shows %v, want only the regular file", got)
		}
	})
	t.Run("secrets dir is a symlink", func(t *testing.T) {
		s, _ := testMachine(t, testSettings)
		if err := os.Symlink(t.TempDir(), s.Dir()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Set("A", []byte("a")); err == nil || !strings.Contains(err.Error(), "is not a directory") {
			t.Errorf("Set: %v", err)
		}
	})
	t.Run("a loose dir is made private", func(t *testing.T) {
		s, _ := testMachine(t, testSettings)
		if err := os.Mkdir(s.Dir(), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Set("A", []byte("a")); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(s.Dir()); fi.Mode().Perm() != DirMode {
			t.Errorf("dir mode %v", fi.Mode())
		}
	})
}

func TestBind(t *testing.T) {
	tests := []struct {
		name, settings string
		wantAdded      bool
	}{
		{"added to [Files]", testSettings, true},
		{"a section created", "[Exec]\nBoot=no\n", true},
		{"the user's own bind at /run/secrets", "[Files]\nBind=/srv/keys:/run/secrets/\n", false},
		{"mbctl's, read-write", "[Files]\nBindReadOnly=/elsewhere:/run/secrets:idmap\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := testMachine(t, tt.settings)
			res, err := s.Set("A", []byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			if (res.BindAdded != "") != tt.wantAdded {
				t.Errorf("BindAdded = %q, want added %v", res.BindAdded, tt.wantAdded)
			}
			if ok, err := s.HasBind(); !ok || err != nil {
				t.Errorf("HasBind = %v, %v", ok, err)
			}
			got, _ := os.ReadFile(p.Settings)
			if !strings.HasPrefix(string(got), tt.settings[:strings.Index(tt.settings, "\n")]) || strings.Count(string(got), "/run/secrets") != 1 {
				t.Errorf("settings:\n%s", got)
			}
		})
	}
	t.Run("a colon in the config dir is escaped", func(t *testing.T) {
		s := For(machine.Paths{Name: "a", ConfigDir: "/srv/c:d/a"})
		if got, want := s.BindValue(), `/srv/c\:d/a/secrets:/run/secrets:idmap`; got != want {
			t.Errorf("BindValue = %q, want %q", got, want)
		}
		host, container, err := machine.ParseBind(s.BindValue())
		if err != nil || host != "/srv/c:d/a/secrets" || container != "/run/secrets" {
			t.Errorf("ParseBind of it = %q %q %v", host, container, err)
		}
	})
}

func TestMissingMachine(t *testing.T) {
	s, p := testMachine(t, testSettings)
	if err := os.RemoveAll(p.ConfigDir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set("A", []byte("a")); !errors.Is(err, machine.ErrNotFound) {
		t.Errorf("Set: %v", err)
	}
	if _, err := s.List(); !errors.Is(err, machine.ErrNotFound) {
		t.Errorf("List: %v", err)
	}
	if err := s.Remove("A"); !errors.Is(err, machine.ErrNotFound) {
		t.Errorf("Remove: %v", err)
	}

	// Settings that cannot be read or parsed: nothing is written.
	s, p = testMachine(t, "Bind=/x:/y\n")
	if _, err := s.Set("A", []byte("a")); err == nil || !strings.Contains(err.Error(), "outside of any section") {
		t.Errorf("Set with broken settings: %v", err)
	}
	if ents, _ := os.ReadDir(s.Dir()); len(ents) != 0 {
		t.Errorf("the secret was written although the bind could not be: %v", ents)
	}
	os.Remove(p.Settings)
	if _, err := s.Set("A", []byte("a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Set without settings: %v", err)
	}
}
