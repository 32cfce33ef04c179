package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// upstream serves body at /blob (with Range support) and answers
// everything else with 404.
func upstream(t *testing.T, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/blob" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// noRedirects is a client that shows redirects instead of following them.
func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get fetches path from the proxy with an optional Range header and
// returns the status, the body read and the read error.
func get(ctx context.Context, c *http.Client, p *Proxy, path, rng string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// waitRequests waits for n requests for path, failing the test after a
// deadline.
func waitRequests(t *testing.T, p *Proxy, path string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.WaitRequests(ctx, path, n); err != nil {
		t.Fatal(err)
	}
}

func TestProxyFaults(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	target := upstream(t, body)
	tests := []struct {
		name       string
		rules      []Rule
		rng        string
		wantStatus int
		wantBody   []byte
		wantErr    bool
		wantServed int64
	}{
		{"pass through", nil, "", 200, body, false, int64(len(body))},
		{"range", nil, "bytes=1000-", 206, body[1000:], false, int64(len(body) - 1000)},
		{"ignore range", []Rule{{Path: "/blob", Fault: IgnoreRange}}, "bytes=1000-", 200, body, false, int64(len(body))},
		{"cut", []Rule{{Path: "/blob", Fault: Cut, After: 5000}}, "", 200, body[:5000], true, 5000},
		{"cut a range", []Rule{{Path: "/blob", Fault: Cut, After: 5000}}, "bytes=1000-", 206, body[1000:6000], true, 5000},
		{"cut and ignore range", []Rule{{Path: "/blob", Fault: IgnoreRange}, {Path: "/blob", Fault: Cut, After: 5000}}, "bytes=1000-", 200, body[:5000], true, 5000},
		{"other path", []Rule{{Path: "/other", Fault: Cut}}, "", 200, body, false, int64(len(body))},
		{"other method", []Rule{{Path: "/blob", Method: http.MethodHead, Fault: Cut}}, "", 200, body, false, int64(len(body))},
		{"status", []Rule{{Path: "/blob", Fault: Status, Code: 429, RetryAfter: "7"}}, "", 429, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := StartT(t, target)
			for _, r := range tt.rules {
				p.Add(r)
			}
			status, b, err := get(t.Context(), noRedirects(), p, "/blob", tt.rng)
			if status != tt.wantStatus || (err != nil) != tt.wantErr {
				t.Fatalf("status %d, error %v; want %d, error %v", status, err, tt.wantStatus, tt.wantErr)
			}
			if tt.wantBody != nil && !bytes.Equal(b, tt.wantBody) {
				t.Errorf("got %d bytes, want %d", len(b), len(tt.wantBody))
			}
			if got := p.Served("/blob"); got != tt.wantServed {
				t.Errorf("Served = %d, want %d", got, tt.wantServed)
			}
			reqs := p.Requests("/blob")
			if len(reqs) != 1 || reqs[0].Range != tt.rng || reqs[0].Status != tt.wantStatus || reqs[0].Bytes != tt.wantServed {
				t.Errorf("requests %+v", reqs)
			}
		})
	}
}

func TestProxyTimes(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 10000)
	p := StartT(t, upstream(t, body))
	cut := p.Add(Rule{Path: "/blob", Fault: Cut, After: 100, Times: 1})
	if _, b, err := get(t.Context(), noRedirects(), p, "/blob", ""); err == nil || len(b) != 100 {
		t.Fatalf("first GET: %d bytes, %v; want a cut after 100", len(b), err)
	}
	if _, b, err := get(t.Context(), noRedirects(), p, "/blob", ""); err != nil || len(b) != len(body) {
		t.Fatalf("second GET: %d bytes, %v; want all", len(b), err)
	}
	if cut.Fired() != 1 {
		t.Errorf("fired %d times, want 1", cut.Fired())
	}
	p.Add(Rule{Path: "/blob", Fault: Cut, After: 10})
	p.Clear()
	if _, b, err := get(t.Context(), noRedirects(), p, "/blob", ""); err != nil || len(b) != len(body) {
		t.Fatalf("after Clear: %d bytes, %v", len(b), err)
	}
	if got, want := p.Served("/blob"), int64(100+2*len(body)); got != want {
		t.Errorf("Served = %d, want %d", got, want)
	}
}

// A stall sends its bytes and then holds the connection until the client
// gives up; held headers hold it before anything is sent.
func TestProxyStallAndHold(t *testing.T) {
	body := bytes.Repeat([]byte("y"), 10000)
	p := StartT(t, upstream(t, body))
	p.Add(Rule{Path: "/blob", Fault: Stall, After: 500, Times: 1})
	p.Add(Rule{Path: "/held", Fault: HoldHeaders})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr()+"/blob", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, 500)
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("the bytes before the stall: %v", err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		read <- err
	}()
	cancel() // the client gives up
	if err := <-read; err == nil {
		t.Error("a read after the stall returned data")
	}

	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := get(ctx, http.DefaultClient, p, "/held", "")
		done <- err
	}()
	waitRequests(t, p, "/held", 1)
	select {
	case err := <-done:
		t.Fatalf("held request returned early: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("held request: %v, want it canceled", err)
	}
	if r := p.Requests("/held")[0]; r.Status != 0 || r.Fault != HoldHeaders {
		t.Errorf("held request logged as %+v", r)
	}
}

func TestProxyRedirectLoop(t *testing.T) {
	p := StartT(t, upstream(t, []byte("z")))
	p.Add(Rule{Path: "/blob", Fault: RedirectLoop})
	_, _, err := get(t.Context(), http.DefaultClient, p, "/blob", "")
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("GET: %v, want net/http's redirect limit", err)
	}
	loops := p.Requests(LoopPath)
	// net/http makes 10 requests: the first and 9 redirects.
	if len(loops) != 9 || loops[0].Path != LoopPath+"1" || loops[1].Path != LoopPath+"2" || loops[2].Path != LoopPath+"1" {
		t.Errorf("loop requests %+v", loops)
	}
	resp, err := noRedirects().Get("http://" + p.Addr() + LoopPath + "2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != LoopPath+"1?X-Amz-Signature="+LoopSecret {
		t.Errorf("Location %q", loc)
	}
}

func TestProxyClosesStalls(t *testing.T) {
	p, err := Start(upstream(t, bytes.Repeat([]byte("w"), 1000)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.Add(Rule{Fault: HoldHeaders})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + p.Addr() + "/blob")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitRequests(t, p, "", 1)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a held request succeeded after Close")
	}
}

func TestStartRejectsBadTarget(t *testing.T) {
	if _, err := Start("no-port"); err == nil {
		t.Error("target without port accepted")
	}
}
