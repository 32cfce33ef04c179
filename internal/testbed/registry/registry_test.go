package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func get(t *testing.T, c *http.Client, url, user, pass string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestPlainRegistry(t *testing.T) {
	r := StartT(t, Options{})
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:PORT", r.Addr())
	}
	if r.URL() != "http://"+r.Addr() {
		t.Errorf("URL() = %q", r.URL())
	}
	if r.CACertPath() != "" {
		t.Errorf("CACertPath() = %q without TLS", r.CACertPath())
	}
	c := r.HTTPClient()
	if got := get(t, c, r.URL()+"/v2/", "", ""); got != http.StatusOK {
		t.Errorf("GET /v2/ = %d, want 200", got)
	}
	blob := "/v2/some/repo/blobs/sha256:" + strings.Repeat("0", 64)
	for range 3 {
		if got := get(t, c, r.URL()+blob, "", ""); got != http.StatusNotFound {
			t.Errorf("GET unknown blob = %d, want 404", got)
		}
	}
	n, err := r.CountRequests(http.MethodGet, "/blobs/sha256:")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("CountRequests(GET, /blobs/) = %d, want 3", n)
	}
	// Any of several substrings; a request matching two counts once.
	if n, err := r.CountRequests(http.MethodGet, "/nothing", "/v2/", "/blobs/"); err != nil || n != 4 {
		t.Errorf("CountRequests(GET, /nothing, /v2/, /blobs/) = %d, %v; want 4", n, err)
	}
	reqs, err := r.Requests()
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{
		{Method: "GET", URI: "/v2/", Status: 200},
		{Method: "GET", URI: blob, Status: 404},
		{Method: "GET", URI: blob, Status: 404},
		{Method: "GET", URI: blob, Status: 404},
	}
	if diff := cmp.Diff(want, reqs); diff != "" {
		t.Errorf("Requests() mismatch (-want +got):\n%s", diff)
	}
}

func TestAuthTLSRegistry(t *testing.T) {
	RequireBinaryT(t, "htpasswd")
	r := StartT(t, Options{TLS: true, Htpasswd: map[string]string{"alice": "s3cret pass", "bob": "x"}})
	if r.URL() != "https://"+r.Addr() {
		t.Errorf("URL() = %q", r.URL())
	}
	if _, err := os.Stat(r.CACertPath()); err != nil {
		t.Fatalf("CA cert: %v", err)
	}
	c := r.HTTPClient()
	for _, tc := range []struct {
		user, pass string
		want       int
	}{
		{"", "", http.StatusUnauthorized},
		{"alice", "wrong", http.StatusUnauthorized},
		{"alice", "s3cret pass", http.StatusOK},
		{"bob", "x", http.StatusOK},
	} {
		if got := get(t, c, r.URL()+"/v2/", tc.user, tc.pass); got != tc.want {
			t.Errorf("GET /v2/ as %q/%q = %d, want %d", tc.user, tc.pass, got, tc.want)
		}
	}
	// A client without the CA must fail the handshake.
	if _, err := http.Get(r.URL() + "/v2/"); err == nil {
		t.Error("GET without the CA succeeded")
	}
	n, err := r.CountRequests("", "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("CountRequests(any, /v2/) = %d, want 4", n)
	}
}

func TestCloseStopsProcessAndRemovesDir(t *testing.T) {
	RequireBinaryT(t, DefaultBinary)
	r, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid := r.proc.Pid()
	dir := r.Dir()
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("registry pid %d still exists after Close (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("registry dir %s still exists after Close: %v", dir, err)
	}
}

func TestCallerDirIsKept(t *testing.T) {
	dir := t.TempDir()
	r := StartT(t, Options{Dir: dir})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.yml", "registry.log"} {
		if _, err := os.Stat(dir + "/" + f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(t.Context(), Options{Binary: "/nonexistent/docker-registry"}); err == nil {
		t.Error("Start with a missing binary succeeded")
	}
	// A binary that exits at once: Start reports it well before the timeout.
	RequireBinaryT(t, "false")
	start := time.Now()
	_, err := Start(t.Context(), Options{Binary: "false", StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Start with a failing binary: err = %v, want 'exited'", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %v to notice the exit", d)
	}
	// A cancelled context stops the wait.
	RequireBinaryT(t, "sleep")
	dir := t.TempDir()
	sleeper := dir + "/sleeper"
	if err := os.WriteFile(sleeper, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := Start(ctx, Options{Binary: sleeper, Dir: dir}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start with a silent binary: err = %v, want DeadlineExceeded", err)
	}
}

func TestParseAccessLog(t *testing.T) {
	log := `time="2026-11-28T09:35:18Z" level=info msg="listening on 127.0.0.1:5999"
127.0.0.1 - - [28/Nov/2026:09:35:19 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "mbctl-testbed-registry"
time="2026-11-28T09:35:19Z" level=info msg="response completed" http.request.uri=/v2/ http.response.status=200
127.0.0.1 - - [28/Nov/2026:09:35:19 +0000] "HEAD /v2/a/blobs/sha256:aa HTTP/1.1" 404 157 "" "go-containerregistry/v0.22.1"
127.0.0.1 - alice [28/Nov/2026:09:35:19 +0000] "GET /v2/a/blobs/sha256:aa HTTP/1.1" 200 157 "" "skopeo/1.9.3"
127.0.0.1 - - [28/Nov/2026:09:35:19 +0000] "GET /v2/?mbctl-testbed-sync=1 HTTP/1.1" 200 2 "" "mbctl-testbed-registry"
`
	got, err := parseAccessLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{
		{Method: "HEAD", URI: "/v2/a/blobs/sha256:aa", Status: 404},
		{Method: "GET", URI: "/v2/a/blobs/sha256:aa", Status: 200},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseAccessLog mismatch (-want +got):\n%s", diff)
	}
}
