package machine

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestEnv(t *testing.T) {
	for _, tt := range []struct {
		name, settings, env, term string
		want                      []string
	}{
		{name: "no files", want: []string{defaultPath}},
		{name: "settings, then env file, then TERM",
			settings: "[Exec]\nEnvironment=PATH=/app/bin \"GREETING=hi there\"\nEnvironment=TERM=dumb\n",
			env:      "# app\nGREETING=hello\nDB=postgres://x\n", term: "xterm-256color",
			want: []string{"PATH=/app/bin", "GREETING=hello", "DB=postgres://x", "TERM=xterm-256color"}},
		{name: "no TERM from the user keeps the machine's",
			settings: "[Exec]\nEnvironment=TERM=dumb\n",
			want:     []string{"TERM=dumb", defaultPath}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := Paths{Name: "m", Settings: filepath.Join(dir, "container.nspawn"), Env: filepath.Join(dir, "man8env.env")}
			if tt.settings != "" {
				mustWrite(t, p.Settings, tt.settings)
			}
			if tt.env != "" {
				mustWrite(t, p.Env, tt.env)
			}
			got, err := Env(p, tt.term)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Env = %q\nwant %q", got, tt.want)
			}
		})
	}
}
