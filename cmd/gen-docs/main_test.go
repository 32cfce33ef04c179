package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man")
	for _, tt := range []struct {
		name, epoch string
		args        []string
		wantErr     string
	}{
		{"no dir", "", nil, "usage: gen-docs -man-dir DIR"},
		{"stray argument", "", []string{"-man-dir", dir, "extra"}, "usage"},
		{"bad epoch", "yesterday", []string{"-man-dir", dir}, `SOURCE_DATE_EPOCH="yesterday"`},
		{"pages", "1764547200", []string{"-man-dir", dir, "-version", "v9.9.9"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.epoch)
			err := run(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run(%q) = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "mbctl.1"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), `"Dec 2025" "mbctl v9.9.9"`) {
				t.Errorf("mbctl.1's header has not the epoch's date and the version:\n%.300s", b)
			}
		})
	}
}
