package boot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/man8s/mbctl/internal/format/appargs"
	"github.com/man8s/mbctl/internal/format/man8env"
)

// The secrets step: the files of /run/secrets reach the app as variables,
// over man8env.env's value of the same name; the log names them and never
// shows a value; a machine without secrets logs nothing of them.
func TestRunGivesTheAppItsSecrets(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args, err := appargs.Quote([]string{self})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		secrets    map[string]string // nil: no /run/secrets
		wantStatus int
		wantApp    string
		wantLog    []string
		noLog      string
	}{
		{
			name:    "no secrets dir",
			wantApp: `greeting="from the env file"`,
			noLog:   "man8s-init: secrets:",
		},
		{
			name:    "a secret overrides the env file",
			secrets: map[string]string{"GREETING": "zq-secret zq", "OTHER": "zq2", "bad-name": "zq3"},
			wantApp: `greeting="zq-secret zq"`,
			wantLog: []string{
				`man8s-init: secrets: skipped: secret name "bad-name": not an environment variable name`,
				"man8s-init: secrets: 2 added to the app's environment from /run/secrets: GREETING OTHER\n",
				"man8s-init: secrets: override man8env.env's value of: GREETING\n",
			},
		},
		{
			name:    "an empty dir",
			secrets: map[string]string{},
			wantApp: `greeting="from the env file"`,
			noLog:   "man8s-init: secrets:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			out := filepath.Join(root, "app.out")
			writeEnv(t, root, map[string]string{man8env.KeyArgs: args, appEnv: out, "GREETING": "from the env file"})
			if tt.secrets != nil {
				dir := filepath.Join(root, man8env.SecretsPath)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				for k, v := range tt.secrets {
					if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			var log bytes.Buffer
			if status := Run(t.Context(), Options{Root: root, Log: &log}); status != tt.wantStatus {
				t.Errorf("status %d, want %d\nlog:\n%s", status, tt.wantStatus, log.String())
			}
			got, _ := os.ReadFile(out)
			if !strings.Contains(string(got), tt.wantApp) {
				t.Errorf("app saw %s, want %s", got, tt.wantApp)
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(log.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, log.String())
				}
			}
			if tt.noLog != "" && strings.Contains(log.String(), tt.noLog) {
				t.Errorf("log has %q:\n%s", tt.noLog, log.String())
			}
			if strings.Contains(log.String(), "zq") {
				t.Errorf("the log shows a secret's value:\n%s", log.String())
			}
		})
	}
}
