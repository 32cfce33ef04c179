package waitfor

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed/ci"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		want    []Target
		wantErr string
	}{
		{spec: "", want: nil},
		{spec: " , ", want: nil},
		{spec: "tcp://db:5432", want: []Target{{Kind: KindTCP, Raw: "tcp://db:5432", Addr: "db:5432"}}},
		{spec: "tcp://[fc00::1]:80", want: []Target{{Kind: KindTCP, Raw: "tcp://[fc00::1]:80", Addr: "[fc00::1]:80"}}},
		{
			spec: "tcp://a:1, http://b/health,https://c:8443/x?y=1  ping://d file:///run/ready",
			want: []Target{
				{Kind: KindTCP, Raw: "tcp://a:1", Addr: "a:1"},
				{Kind: KindHTTP, Raw: "http://b/health", Addr: "http://b/health"},
				{Kind: KindHTTP, Raw: "https://c:8443/x?y=1", Addr: "https://c:8443/x?y=1"},
				{Kind: KindPing, Raw: "ping://d", Addr: "d"},
				{Kind: KindFile, Raw: "file:///run/ready", Addr: "/run/ready"},
			},
		},
		{spec: "ping://[fc00::2]", want: []Target{{Kind: KindPing, Raw: "ping://[fc00::2]", Addr: "fc00::2"}}},
		{spec: "file://localhost/x", want: []Target{{Kind: KindFile, Raw: "file://localhost/x", Addr: "/x"}}},
		{spec: "db:5432", wantErr: `item "db:5432": missing scheme`},
		{spec: "tcp://db", wantErr: `item "tcp://db": want tcp://host:port`},
		{spec: "tcp://:80", wantErr: `want tcp://host:port`},
		{spec: "tcp://db:http", wantErr: `port "http"`},
		{spec: "tcp://db:70000", wantErr: `port "70000"`},
		{spec: "http://", wantErr: `item "http://": missing host`},
		{spec: "http://a:0/", wantErr: `port "0"`},
		{spec: "ping://h:80", wantErr: `want ping://host`},
		{spec: "ping://h/x", wantErr: `want ping://host`},
		{spec: "file://host/x", wantErr: `no host`},
		{spec: "file:///", wantErr: `want file:///absolute/path`},
		{spec: "udp://a:1", wantErr: `unknown scheme "udp"`},
		{spec: "tcp://a:1,udp://b:2,nope", wantErr: `item "nope"`},
		{spec: "ftp://u:secret@h/", wantErr: `item "ftp://u:xxxxx@h/"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := Parse(tt.spec)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error containing %q", tt.spec, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "accepted forms") {
					t.Fatalf("Parse(%q) error = %q, want it to contain %q and the accepted forms", tt.spec, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error leaks a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.spec, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("target %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTargetStringRedacts(t *testing.T) {
	ts, err := Parse("https://user:pw@h/p?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	s := ts[0].String()
	if strings.Contains(s, "pw") || strings.Contains(s, "abc") {
		t.Fatalf("String() = %q leaks secrets", s)
	}
}

func testOpts(t *testing.T) Options {
	return Options{
		Timeout:  10 * time.Second,
		Interval: 10 * time.Millisecond,
		Progress: 50 * time.Millisecond,
		Log:      slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func mustParse(t *testing.T, spec string) []Target {
	t.Helper()
	ts, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// waitAsync runs Wait in the background and returns a channel with its result.
func waitAsync(ctx context.Context, targets []Target, opts Options) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- Wait(ctx, targets, opts) }()
	return ch
}

// result returns Wait's result, failing after a deadline.
func result(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Wait did not return within 15s")
		return nil
	}
}

// notYet checks that Wait has not returned, giving it a few attempts' time.
func notYet(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("Wait returned early: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestWaitTCPListenerLater(t *testing.T) {
	// Reserve a free port, then release it so that nothing listens yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ch := waitAsync(t.Context(), mustParse(t, "tcp://"+addr), testOpts(t))
	notYet(t, ch)
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer l.Close()
	if err := result(t, ch); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestWaitHTTP(t *testing.T) {
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/nowhere", http.StatusFound)
		case "/nowhere":
			w.WriteHeader(http.StatusInternalServerError) // following the redirect would fail
		default:
			w.WriteHeader(int(status.Load()))
		}
	}))
	defer srv.Close()

	t.Run("200", func(t *testing.T) {
		status.Store(200)
		if err := Wait(t.Context(), mustParse(t, srv.URL+"/ok"), testOpts(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("302 not followed", func(t *testing.T) {
		if err := Wait(t.Context(), mustParse(t, srv.URL+"/redirect"), testOpts(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("500 then 200", func(t *testing.T) {
		status.Store(500)
		ch := waitAsync(t.Context(), mustParse(t, srv.URL+"/health"), testOpts(t))
		notYet(t, ch)
		status.Store(200)
		if err := result(t, ch); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("https verifies certificates", func(t *testing.T) {
		tls := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		tls.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are expected
		tls.StartTLS()
		defer tls.Close()
		// One check at a time until one reaches the handshake: on a loaded
		// machine a dial can time out first, which says nothing about the
		// certificate (a Wait with a timeout failed so in CI).
		target := mustParse(t, tls.URL)[0]
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err := Check(ctx, target)
			cancel()
			if err == nil {
				t.Fatal("Check met an https target whose certificate no CA signed")
			}
			if strings.Contains(err.Error(), "certificate") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Check = %v, want a certificate error", err)
			}
			t.Logf("not at the handshake yet: %v", err)
		}
	})
}

func TestWaitFileLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ready")
	ch := waitAsync(t.Context(), mustParse(t, "file://"+path), testOpts(t))
	notYet(t, ch)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := result(t, ch); err != nil {
		t.Fatal(err)
	}
}

func TestWaitTimeoutListsUnmet(t *testing.T) {
	dir := t.TempDir()
	met := filepath.Join(dir, "met")
	if err := os.WriteFile(met, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	opts := testOpts(t)
	opts.Timeout = 300 * time.Millisecond
	targets := mustParse(t, "file://"+met+" file://"+dir+"/missing "+srv.URL+"/?token=s3cret")
	err := Wait(t.Context(), targets, opts)
	var ue *UnmetError
	if !errors.As(err, &ue) {
		t.Fatalf("Wait = %v, want *UnmetError", err)
	}
	if len(ue.Unmet) != 2 {
		t.Fatalf("unmet = %v, want the missing file and the URL", ue.Unmet)
	}
	msg := err.Error()
	for _, want := range []string{dir + "/missing", "no such file", "503", "2 not met"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "s3cret") || strings.Contains(msg, "file://"+met+" ") {
		t.Errorf("error %q leaks the query or lists a met target", msg)
	}
}

func TestWaitCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := waitAsync(ctx, mustParse(t, "file:///nonexistent/man8s"), testOpts(t))
	notYet(t, ch)
	cancel()
	start := time.Now()
	err := result(t, ch)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Wait took %v to return after cancel", d)
	}
}

func TestWaitNoTargets(t *testing.T) {
	if err := Wait(t.Context(), nil, Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestPingLoopback(t *testing.T) {
	notPermitted := func(context.Context, net.IP) error { return errICMPNotPermitted }
	failing := func(context.Context, net.IP) error { return errors.New("no answer") }
	tests := []struct {
		name    string
		icmp    func(context.Context, net.IP) error
		tcp     func(context.Context, net.IP) error
		wantErr bool
	}{
		{"ICMP answers", func(context.Context, net.IP) error { return nil }, failing, false},
		{"ICMP fails, no fallback", failing, func(context.Context, net.IP) error { return nil }, true},
		{"ICMP not permitted, TCP fallback", notPermitted, tcpAnswer, false},
		{"ICMP not permitted, TCP fails", notPermitted, failing, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOpts(t)
			opts.Timeout = 500 * time.Millisecond
			opts.ping = func(ctx context.Context, host string) error { return ping(ctx, host, tt.icmp, tt.tcp) }
			err := Wait(t.Context(), mustParse(t, "ping://127.0.0.1"), opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Wait = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestICMPEchoLoopback(t *testing.T) {
	for _, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			err := icmpEcho(ctx, net.ParseIP(ip))
			if errors.Is(err, errICMPNotPermitted) {
				ci.Skip(t, "ICMP sockets not permitted here; the fallback is covered by TestPingLoopback")
			}
			if err != nil {
				t.Fatalf("icmpEcho(%s): %v", ip, err)
			}
		})
	}
}

func TestWaitPingDefault(t *testing.T) {
	// The production pinger (ICMP, or TCP when ICMP is not permitted) meets 127.0.0.1.
	if err := Wait(t.Context(), mustParse(t, "ping://127.0.0.1"), testOpts(t)); err != nil {
		t.Fatal(err)
	}
}

func TestChecksum(t *testing.T) {
	msg := echoRequest(true, 0x1234, 7)
	if checksum(msg) != 0 {
		t.Fatalf("checksum over a message with its checksum = %#x, want 0", checksum(msg))
	}
}
