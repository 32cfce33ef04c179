package secrets

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/man8s/mbctl/internal/format/man8env"
)

func TestRead(t *testing.T) {
	type file struct {
		name, content string
	}
	tests := []struct {
		name    string
		files   []file
		setup   func(t *testing.T, dir string)
		want    []string
		wantLog []string
	}{
		{
			name:  "secrets become variables, sorted, values as they are",
			files: []file{{"TOKEN", "t0k3n"}, {"DB_PASSWORD", "pass\nword\n"}, {"EMPTY", ""}},
			want:  []string{"DB_PASSWORD=pass\nword\n", "EMPTY=", "TOKEN=t0k3n"},
		},
		{
			name: "invalid names are skipped with a line",
			files: []file{{"GOOD", "g"}, {"bad-name", "zz1"}, {"9X", "zz2"}, {"MAN8S_STOP_SIGNAL", "zz3"},
				{".GOOD.tmp123", "zz4"}},
			want: []string{"GOOD=g"},
			wantLog: []string{
				`skipped: secret name ".GOOD.tmp123": not an environment variable name`,
				`skipped: secret name "9X": not an environment variable name`,
				`skipped: secret name "MAN8S_STOP_SIGNAL": MAN8S_ names are Man8S's own settings`,
				`skipped: secret name "bad-name": not an environment variable name`,
			},
		},
		{
			name:  "files only, values an env var can hold",
			files: []file{{"OK", "ok"}, {"NUL", "zz\x00zz"}, {"BIG", strings.Repeat("z", man8env.MaxSecretSize+1)}},
			setup: func(t *testing.T, dir string) {
				for _, err := range []error{
					os.Mkdir(filepath.Join(dir, "SUBDIR"), 0o700),
					os.Symlink(filepath.Join(dir, "OK"), filepath.Join(dir, "LINK")),
					syscall.Mkfifo(filepath.Join(dir, "FIFO"), 0o600),
				} {
					if err != nil {
						t.Fatal(err)
					}
				}
			},
			want: []string{"OK=ok"},
			wantLog: []string{
				"skipped secret BIG: larger than the limit of 65536 bytes",
				"skipped secret FIFO: not a regular file (p---------)",
				"skipped secret LINK: a symbolic link, not a regular file",
				"skipped secret NUL: value holds a NUL byte",
				"skipped secret SUBDIR: not a regular file (d---------)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			var log bytes.Buffer
			got, err := Read(dir, messages(&log))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			lines := strings.Split(strings.TrimSpace(log.String()), "\n")
			if log.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tt.wantLog) {
				t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(tt.wantLog), log.String())
			}
			for i, want := range tt.wantLog {
				if !strings.Contains(lines[i], want) {
					t.Errorf("log line %d = %s\nwant it to contain %s", i, lines[i], want)
				}
			}
			if strings.Contains(log.String(), "zz") {
				t.Errorf("the log shows a value:\n%s", log.String())
			}
		})
	}
}

// messages is a logger that writes each record's message as one line.
func messages(w *bytes.Buffer) *slog.Logger { return slog.New(lineHandler{w}) }

type lineHandler struct{ w *bytes.Buffer }

func (h lineHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h lineHandler) Handle(_ context.Context, r slog.Record) error {
	h.w.WriteString(r.Message + "\n")
	return nil
}
func (h lineHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h lineHandler) WithGroup(string) slog.Handler      { return h }

func TestReadWithoutDir(t *testing.T) {
	var log bytes.Buffer
	logger := messages(&log)
	dir := t.TempDir()
	if got, err := Read(filepath.Join(dir, "absent"), logger); got != nil || err != nil || log.Len() != 0 {
		t.Errorf("a missing dir: %v, %v, log %q", got, err, log.String())
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(file, logger); got != nil || err != nil || !strings.Contains(log.String(), "is not a directory") {
		t.Errorf("a file: %v, %v, log %q", got, err, log.String())
	}
}
