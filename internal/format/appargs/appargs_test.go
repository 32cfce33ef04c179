package appargs

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

const helperEnv = "APPARGS_TEST_PRINT_ARGS"

// TestMain lets the test binary act as a helper that prints its argv as JSON.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := json.NewEncoder(os.Stdout).Encode(os.Args[1:]); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var awkwardArgvs = [][]string{
	{"nginx", "-g", "daemon off;"},
	{"a b", "c  d", " lead", "trail "},
	{`it's`, `"dq"`, `'`, `''`, `\`, `\\`, `a\nb`},
	{"$HOME", "${X:-y}", "$(id)", "`id`", "$((1+2))"},
	{"*", "?", "[a]", "~", "~root", "{a,b}", "!", "#x", "a#b"},
	{"", "", "x", ""},
	{"héllo", "日本語", "emoji 🙂", "\t tab"},
	{"a=b", "if", "then", "exec", "--", "-", "&&", "|", ";", ">", "<", "&"},
	{"%", "@", "+", ":", ",", ".", "/", "a/b-c_d.e"},
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, argv := range awkwardArgvs {
		q, err := Quote(argv)
		if err != nil {
			t.Fatalf("Quote(%q): %v", argv, err)
		}
		got, err := Command(q, false)
		if err != nil {
			t.Fatalf("Command(%q): %v", q, err)
		}
		if !slices.Equal(got, argv) {
			t.Errorf("round trip of %q via %q = %q", argv, q, got)
		}
	}
}

func TestQuoteThroughRealShell(t *testing.T) {
	if _, err := os.Stat(ShellPath); err != nil {
		ci.Skip(t, "no %s: %v", ShellPath, err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, argv := range awkwardArgvs {
		full := append([]string{self}, argv...)
		q, err := Quote(full)
		if err != nil {
			t.Fatal(err)
		}
		cmdArgv, err := Command(q, true)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(cmdArgv[0], cmdArgv[1:]...)
		cmd.Env = append(os.Environ(), helperEnv+"=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", cmdArgv[2], err)
		}
		var got []string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if !slices.Equal(got, argv) {
			t.Errorf("sh -c %q gave %q, want %q", cmdArgv[2], got, argv)
		}
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		args     string
		hasShell bool
		want     []string
		wantErr  string // substring; empty means success
	}{
		{args: "nginx -g 'daemon off;'", hasShell: true, want: []string{"/bin/sh", "-c", "exec nginx -g 'daemon off;'"}},
		{args: "echo $HOME", hasShell: true, want: []string{"/bin/sh", "-c", "exec echo $HOME"}},
		{args: "nginx -g 'daemon off;'", want: []string{"nginx", "-g", "daemon off;"}},
		{args: `a\ b "c \"d\" \$e \x" 'f\g'`, want: []string{"a b", `c "d" $e \x`, `f\g`}},
		{args: "  /app/run   --flag=1  # comment", want: []string{"/app/run", "--flag=1"}},
		{args: "a=b c", want: []string{"a=b", "c"}},
		{args: "run \\\n  --x", want: []string{"run", "--x"}},
		{args: "", wantErr: "empty"},
		{args: "   ", hasShell: true, wantErr: "empty"},
		{args: "echo $HOME", wantErr: "parameter expansion"},
		{args: `echo "${X}"`, wantErr: "parameter expansion"},
		{args: "echo $(id)", wantErr: "command substitution"},
		{args: "echo `id`", wantErr: "command substitution"},
		{args: "echo $((1+2))", wantErr: "arithmetic"},
		{args: "ls *.txt", wantErr: "glob"},
		{args: "ls a?", wantErr: "glob"},
		{args: "ls ~/x", wantErr: "tilde"},
		{args: "a | b", wantErr: "pipeline"},
		{args: "a && b", wantErr: "pipeline"},
		{args: "a; b", wantErr: "several commands"},
		{args: "a > out", wantErr: "redirection"},
		{args: "a &", wantErr: "background"},
		{args: "'unterminated", wantErr: "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got, err := Command(tt.args, tt.hasShell)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Command(%q) = %q, %v; want error containing %q", tt.args, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Command(%q): %v", tt.args, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Command(%q) = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

func TestQuoteErrors(t *testing.T) {
	tests := []struct {
		argv    []string
		wantErr string
	}{
		{argv: nil, wantErr: "empty argv"},
		{argv: []string{"a", "b\nc"}, wantErr: "word 1"},
		{argv: []string{"a\x00"}, wantErr: "word 0"},
		{argv: []string{"ok", "ok", "\xad"}, wantErr: "word 2"},
	}
	for _, tt := range tests {
		if _, err := Quote(tt.argv); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Quote(%q) error = %v, want containing %q", tt.argv, err, tt.wantErr)
		}
	}
}

func FuzzQuoteRoundTrip(f *testing.F) {
	for _, argv := range awkwardArgvs {
		f.Add(strings.Join(argv, "\x1f"))
	}
	f.Fuzz(func(t *testing.T, joined string) {
		argv := strings.Split(joined, "\x1f")
		q, err := Quote(argv)
		if err != nil {
			if !strings.ContainsAny(joined, "\n\x00") && utf8.ValidString(joined) {
				t.Fatalf("Quote(%q): %v", argv, err)
			}
			return
		}
		got, err := Command(q, false)
		if err != nil {
			t.Fatalf("Command(%q) of Quote(%q): %v", q, argv, err)
		}
		if !slices.Equal(got, argv) {
			t.Fatalf("round trip of %q via %q = %q", argv, q, got)
		}
	})
}
