package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/man8s/mbctl/internal/testbed/faultproxy"
	"github.com/man8s/mbctl/internal/testbed/ociimage"
	"github.com/man8s/mbctl/internal/testbed/registry"
)

// Short timeouts and waits for tests that break the network on purpose.
const (
	testTimeout    = time.Second
	testRetryDelay = 10 * time.Millisecond
)

// faultOptions are Options with short timeouts and waits.
func faultOptions() Options {
	return Options{IdleTimeout: testTimeout, ResponseHeaderTimeout: testTimeout, RetryDelay: testRetryDelay}
}

// randomBytes returns n bytes that do not compress, the same every run.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'m', 'b', 'c', 't', 'l'})
	_, _ = r.Read(b)
	return b
}

// faultRegistry pushes an image with one incompressible 1 MiB layer to a
// real registry and returns a fault proxy in front of it and the name of
// the image through the proxy.
func faultRegistry(t *testing.T) (*faultproxy.Proxy, string) {
	t.Helper()
	reg := registry.StartT(t, registry.Options{})
	l, err := ociimage.Layer(ociimage.File("big", randomBytes(1<<20), 0o644))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Image(ociimage.AppConfig{}, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociimage.Push(t.Context(), img, reg.Addr()+"/flt/big:1"); err != nil {
		t.Fatal(err)
	}
	p := faultproxy.StartT(t, reg.Addr())
	return p, p.Addr() + "/flt/big:1"
}

// fetchLayer opens and reads layer l, returning what it read and the first
// error; the read is bounded by a deadline, so a hang fails the test.
func fetchLayer(t *testing.T, im *Image, l Layer) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rc, err := im.OpenLayer(ctx, l)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Each fault is survived: the layer arrives whole and verified, resumed
// where the range is honoured, and the bytes served show that nothing was
// fetched twice but what a registry ignoring Range had to send again.
func TestOpenLayerSurvivesFaults(t *testing.T) {
	p, ref := faultRegistry(t)
	im, err := Resolve(t.Context(), mustParse(t, ref), faultOptions())
	if err != nil {
		t.Fatal(err)
	}
	l := im.Layers[0]
	blobPath := "/blobs/" + l.Digest.String()
	const cutAt = 300_000
	resumed := fmt.Sprintf("bytes=%d-", cutAt)
	tests := []struct {
		name   string
		rules  []faultproxy.Rule
		ranges []string // Range headers of the blob requests
		status []int    // their statuses
		// maxServed bounds the bytes served for the blob.
		maxServed int64
	}{
		{"no fault", nil, []string{""}, []int{200}, l.Size},
		{"cut once", []faultproxy.Rule{{Path: blobPath, Fault: faultproxy.Cut, After: cutAt, Times: 1}},
			[]string{"", resumed}, []int{200, 206}, l.Size},
		{"cut twice", []faultproxy.Rule{{Path: blobPath, Fault: faultproxy.Cut, After: cutAt, Times: 2}},
			[]string{"", resumed, fmt.Sprintf("bytes=%d-", 2*cutAt)}, []int{200, 206, 206}, l.Size},
		{"cut, registry ignores Range", []faultproxy.Rule{
			{Path: blobPath, Fault: faultproxy.IgnoreRange},
			{Path: blobPath, Fault: faultproxy.Cut, After: cutAt, Times: 1},
		}, []string{"", resumed}, []int{200, 200}, l.Size + cutAt},
		{"stall once", []faultproxy.Rule{{Path: blobPath, Fault: faultproxy.Stall, After: cutAt, Times: 1}},
			[]string{"", resumed}, []int{200, 206}, l.Size},
		{"headers held once", []faultproxy.Rule{{Path: blobPath, Fault: faultproxy.HoldHeaders, Times: 1}},
			[]string{"", ""}, []int{0, 200}, l.Size},
		{"503 with Retry-After", []faultproxy.Rule{{Path: blobPath, Fault: faultproxy.Status, Code: 503, RetryAfter: "0", Times: 2}},
			[]string{"", "", ""}, []int{503, 503, 200}, l.Size},
		{"429", []faultproxy.Rule{{Path: blobPath, Fault: faultproxy.Status, Code: 429, Times: 1}},
			[]string{"", ""}, []int{429, 200}, l.Size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.Clear()
			before, reqsBefore := p.Served(blobPath), len(p.Requests(blobPath))
			for _, r := range tt.rules {
				p.Add(r)
			}
			b, err := fetchLayer(t, im, l)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != l.Digest.Hex {
				t.Fatal("the layer read does not match its digest")
			}
			reqs := p.Requests(blobPath)[reqsBefore:]
			var ranges []string
			var status []int
			for _, r := range reqs {
				ranges, status = append(ranges, r.Range), append(status, r.Status)
			}
			if fmt.Sprint(ranges) != fmt.Sprint(tt.ranges) || fmt.Sprint(status) != fmt.Sprint(tt.status) {
				t.Errorf("blob requests: ranges %q statuses %v; want %q %v", ranges, status, tt.ranges, tt.status)
			}
			served := p.Served(blobPath) - before
			t.Logf("blob of %d bytes: %d bytes served in %d requests", l.Size, served, len(reqs))
			if served > tt.maxServed {
				t.Errorf("%d bytes served for a blob of %d, want at most %d", served, l.Size, tt.maxServed)
			}
		})
	}
}

// Faults that do not go away fail the download after the configured
// attempts, with a message naming the host, the blob and the count; those
// that asking again cannot fix fail at once.
func TestOpenLayerGivesUp(t *testing.T) {
	p, ref := faultRegistry(t)
	opts := faultOptions()
	opts.BlobAttempts = 3
	im, err := Resolve(t.Context(), mustParse(t, ref), opts)
	if err != nil {
		t.Fatal(err)
	}
	l := im.Layers[0]
	blobPath := "/blobs/" + l.Digest.String()
	short := shortDigest(l.Digest)
	host := p.Addr()
	tests := []struct {
		name     string
		rule     faultproxy.Rule
		requests int
		want     []string
	}{
		{"cut every time", faultproxy.Rule{Fault: faultproxy.Cut, After: 100_000}, 3, []string{
			"registry " + host + ": connection lost at byte 300000 of ", "while downloading layer " + short,
			"gave up after 3 attempts, 300000 of ",
		}},
		{"stall every time", faultproxy.Rule{Fault: faultproxy.Stall, After: 1000}, 3, []string{
			"registry " + host + ": no data for 1s while downloading layer " + short, "gave up after 3 attempts",
		}},
		{"headers never come", faultproxy.Rule{Fault: faultproxy.HoldHeaders}, 3, []string{
			"registry " + host + ": no response headers for 1s while downloading layer " + short, "gave up after 3 attempts",
		}},
		{"503 every time", faultproxy.Rule{Fault: faultproxy.Status, Code: 503}, 3, []string{
			"registry " + host + ": HTTP 503 Service Unavailable", "gave up after 3 attempts",
		}},
		{"redirect loop", faultproxy.Rule{Fault: faultproxy.RedirectLoop}, 1, []string{
			"redirect loop: http://" + host + faultproxy.LoopPath + "1 -> http://" + host + faultproxy.LoopPath + "2 -> http://" + host + faultproxy.LoopPath + "1",
			"(reached from http://" + host + "/v2/flt/big" + blobPath + ")", "while downloading layer " + short,
		}},
		{"404", faultproxy.Rule{Fault: faultproxy.Status, Code: 404}, 1, []string{"HTTP 404 Not Found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.Clear()
			before := len(p.Requests(blobPath))
			tt.rule.Path = blobPath
			p.Add(tt.rule)
			_, err := fetchLayer(t, im, l)
			if err == nil {
				t.Fatal("the download succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), faultproxy.LoopSecret) || strings.Contains(err.Error(), "?") {
				t.Errorf("error shows a query string: %v", err)
			}
			if n := len(p.Requests(blobPath)) - before; n != tt.requests {
				t.Errorf("%d blob requests, want %d", n, tt.requests)
			}
		})
	}
}

// Manifests go through the same transport: a redirect loop is named, and
// a registry that holds the headers once is asked again (by
// go-containerregistry's retries).
func TestResolveThroughFaults(t *testing.T) {
	p, ref := faultRegistry(t)
	manifest := "/manifests/1"

	p.Add(faultproxy.Rule{Path: manifest, Fault: faultproxy.RedirectLoop})
	_, err := Resolve(t.Context(), mustParse(t, ref), faultOptions())
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "redirect loop: http://"+p.Addr()+faultproxy.LoopPath+"1 -> ") {
		t.Errorf("manifest redirect loop: %v", err)
	}
	if err != nil && (strings.Contains(err.Error(), faultproxy.LoopSecret) || strings.Contains(err.Error(), "?")) {
		t.Errorf("error shows a query string: %v", err)
	}

	p.Clear()
	p.Add(faultproxy.Rule{Path: manifest, Fault: faultproxy.HoldHeaders, Times: 1})
	if _, err := Resolve(t.Context(), mustParse(t, ref), faultOptions()); err != nil {
		t.Errorf("manifest headers held once: %v", err)
	}
	if n := len(p.Requests(manifest)); n < 2 {
		t.Errorf("%d manifest requests, want a retry", n)
	}
}

// newLoopbackServer serves handler on 127.0.0.1 and returns its address.
func newLoopbackServer(t *testing.T, handler http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func transportError(code int) *transport.Error { return &transport.Error{StatusCode: code} }

// TestBlobReaderContent covers answers a real registry does not give:
// blobs longer or shorter than their descriptor, and nonsense ranges.
func TestBlobReaderContent(t *testing.T) {
	blob := randomBytes(10_000)
	sum := sha256.Sum256(blob)
	digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	tests := []struct {
		name string
		// serve answers request n (0-based).
		serve func(w http.ResponseWriter, r *http.Request, n int)
		want  string // error text; "" for success
		reqs  int
	}{
		{"longer, chunked", func(w http.ResponseWriter, r *http.Request, n int) {
			w.(http.Flusher).Flush()
			w.Write(blob)
			w.Write([]byte("more"))
		}, "is longer than the 10000 bytes its descriptor says", 1},
		{"wrong Content-Length", func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", "10004")
			w.Write(blob)
			w.Write([]byte("more"))
		}, "Content-Length 10004 does not match the 10000 bytes", 1},
		{"shorter, chunked, every time", func(w http.ResponseWriter, r *http.Request, n int) {
			w.(http.Flusher).Flush()
			w.Write(blob[:5000])
		}, "the response ended after 5000 of 10000 bytes", 2},
		{"corrupt", func(w http.ResponseWriter, r *http.Request, n int) {
			b := append([]byte(nil), blob...)
			b[100] ^= 1
			w.Write(b)
		}, "failed its checksum", 1},
		{"wrong Content-Range, then whole", func(w http.ResponseWriter, r *http.Request, n int) {
			switch {
			case n == 0:
				w.Header().Set("Content-Length", "10000")
				w.(http.Flusher).Flush()
				w.Write(blob[:4000])
				panic(http.ErrAbortHandler)
			case r.Header.Get("Range") != "":
				w.Header().Set("Content-Range", "bytes 0-9999/10000")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(blob)
			default:
				w.Write(blob)
			}
		}, "", 3},
		{"416, then whole", func(w http.ResponseWriter, r *http.Request, n int) {
			switch {
			case n == 0:
				w.Header().Set("Content-Length", "10000")
				w.(http.Flusher).Flush()
				w.Write(blob[:4000])
				panic(http.ErrAbortHandler)
			case r.Header.Get("Range") != "":
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			default:
				w.Write(blob)
			}
		}, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			addr := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					return
				}
				tt.serve(w, r, int(n.Add(1)-1))
			}))
			o := faultOptions()
			o.BlobAttempts = 2
			if tt.reqs > 2 {
				o.BlobAttempts = tt.reqs
			}
			s, err := newSession(o)
			if err != nil {
				t.Fatal(err)
			}
			ref := mustParse(t, addr+"/x/y:1")
			rr, err := s.rebase(ref, addr)
			if err != nil {
				t.Fatal(err)
			}
			c := s.blobClient(rr.Context(), addr)
			rc, err := c.open(t.Context(), "layer", digest, int64(len(blob)))
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("read: %v", err)
			case tt.want == "" && string(got) != string(blob):
				t.Fatalf("read %d bytes, not the blob", len(got))
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("read: %v, want %q", err, tt.want)
			}
			if got := int(n.Load()); got != tt.reqs {
				t.Errorf("%d blob requests, want %d", got, tt.reqs)
			}
		})
	}
}

func TestRetryPolicyWait(t *testing.T) {
	p := retryPolicy{attempts: 5, delay: time.Second, maxDelay: 30 * time.Second}
	tests := []struct {
		failed     int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{1, 0, 800 * time.Millisecond, 1200 * time.Millisecond},
		{2, 0, 1600 * time.Millisecond, 2400 * time.Millisecond},
		{4, 0, 6400 * time.Millisecond, 9600 * time.Millisecond},
		{10, 0, 24 * time.Second, 36 * time.Second},
		{1000, 0, 24 * time.Second, 36 * time.Second},
		{1, 10 * time.Second, 10 * time.Second, 10 * time.Second},
		{1, time.Hour, maxRetryAfter, maxRetryAfter},
	}
	for _, tt := range tests {
		for range 20 {
			if d := p.wait(tt.failed, tt.retryAfter); d < tt.lo || d > tt.hi {
				t.Errorf("wait(%d, %s) = %s, want %s..%s", tt.failed, tt.retryAfter, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"99999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 100-199/*", 100, -1, true},
		{"bytes 100-199/150", 0, 0, false},
		{"bytes 200-100/300", 0, 0, false},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		start, total, ok := parseContentRange(tt.in)
		if ok != tt.ok || (ok && (start != tt.start || total != tt.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tt.in, start, total, ok, tt.start, tt.total, tt.ok)
		}
	}
}

func TestInternalAddress(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "192.168.0.1": true, "169.254.169.254": true,
		"::1": true, "fe80::1%eth0": true, "fd00::1": true, "::ffff:127.0.0.1": true, "0.0.0.0": true,
		"127.1": true, "0x7f000001": true, "2130706433": true, "0177.0.0.1": true,
		"8.8.8.8": false, "2001:db8::1": false, "s3.amazonaws.com": false, "cafe.be": false,
		"1password.com": false, "": false,
	} {
		if got := internalAddress(host); got != want {
			t.Errorf("internalAddress(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestCheckBlobRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	origin := []*http.Request{req("https://registry.example/v2/x/blobs/sha256:1")}
	tests := []struct {
		to string
		ok bool
	}{
		{"https://cdn.example/blob?sig=1", true},
		{"https://registry.example/other", true},
		{"http://169.254.169.254/latest/meta-data", false},
		{"http://10.0.0.1/x", false},
		{"http://0x7f000001/x", false},
	}
	for _, tt := range tests {
		err := checkBlobRedirect(req(tt.to), origin)
		if (err == nil) != tt.ok {
			t.Errorf("redirect to %s: %v, want allowed %v", tt.to, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "meta-data") {
			t.Errorf("error shows the path: %v", err)
		}
	}
	// Loopback to loopback is the same kind of host: allowed.
	if err := checkBlobRedirect(req("http://127.0.0.1:5001/x"), []*http.Request{req("http://127.0.0.1:5000/v2/")}); err != nil {
		t.Errorf("loopback port to port: %v", err)
	}
}

// chainOf builds the request net/http makes after following urls[:len-1].
func chainOf(t *testing.T, urls ...string) *http.Request {
	t.Helper()
	var prev *http.Request
	for _, u := range urls {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			r.Response = &http.Response{StatusCode: http.StatusFound, Request: prev}
		}
		prev = r
	}
	return prev
}

func TestCheckRedirects(t *testing.T) {
	many := []string{"http://h/0"}
	for i := 1; i <= 11; i++ {
		many = append(many, fmt.Sprintf("http://h/%d?token=secret", i))
	}
	tests := []struct {
		name string
		urls []string
		want string // "" for none
	}{
		{"no redirect", []string{"http://h/a"}, ""},
		{"one", []string{"http://h/a", "http://cdn/b"}, ""},
		{"ten", many[:11], ""},
		{"eleven", many, "more than 10 redirects: http://h/0 -> http://h/1 -> http://h/2 -> ... -> http://h/9 -> http://h/10 -> http://h/11"},
		{"loop", []string{"http://h/v2/x", "http://h/a?sig=secret", "http://h/b?sig=secret", "http://h/a?sig=secret"},
			"redirect loop: http://h/a -> http://h/b -> http://h/a (reached from http://h/v2/x)"},
		{"self", []string{"http://h/a", "http://h/a"}, "redirect loop: http://h/a -> http://h/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkRedirects(chainOf(t, tt.urls...), 10)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v\nwant %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows a query: %v", err)
			}
			var re *RedirectError
			if err != nil && !errors.As(err, &re) {
				t.Errorf("%T is not a *RedirectError", err)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{io.ErrUnexpectedEOF, true},
		{&StallError{Host: "h", Waiting: "data", After: time.Second}, true},
		{&url.Error{Op: "Get", URL: "http://h/", Err: &StallError{Host: "h"}}, true},
		{&statusError{te: transportError(503)}, true},
		{&statusError{te: transportError(429)}, true},
		{&statusError{te: transportError(404)}, false},
		{&statusError{te: transportError(401)}, false},
		{&statusError{te: transportError(501)}, false},
		{&RedirectError{Loop: -1}, false},
		{&redirectRefusedError{}, false},
		{&plainHTTPError{host: "h"}, false},
		{&contentError{"x"}, false},
		{fmt.Errorf("x: %w", context.Canceled), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestNetworkOptions(t *testing.T) {
	for _, o := range []Options{{BlobAttempts: -1}, {RetryDelay: -time.Second}, {MaxRedirects: -1}} {
		if _, err := newSession(o); err == nil {
			t.Errorf("newSession(%+v) accepted", o)
		}
	}
	s, err := newSession(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.retry.attempts != DefaultBlobAttempts || s.retry.delay != DefaultRetryDelay || cap(s.slots) != DefaultJobs {
		t.Errorf("defaults: %+v, %d slots", s.retry, cap(s.slots))
	}
	for _, tt := range []struct {
		o            Options
		header, idle time.Duration
		redirects    int
	}{
		{Options{}, DefaultResponseHeaderTimeout, DefaultIdleTimeout, DefaultMaxRedirects},
		{Options{ResponseHeaderTimeout: time.Second, IdleTimeout: 2 * time.Second, MaxRedirects: 3}, time.Second, 2 * time.Second, 3},
		{Options{ResponseHeaderTimeout: -1, IdleTimeout: -1}, 0, 0, DefaultMaxRedirects},
	} {
		tr, err := newPolicyTransport(tt.o, netPolicy{}, 4, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if tr.headerTimeout != tt.header || tr.idleTimeout != tt.idle || tr.maxRedirects != tt.redirects {
			t.Errorf("%+v: header %s idle %s redirects %d; want %s %s %d", tt.o, tr.headerTimeout, tr.idleTimeout, tr.maxRedirects, tt.header, tt.idle, tt.redirects)
		}
	}
}

func TestCtxError(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("interrupt signal received")
	cancel(cause)
	err := ctxError(ctx)
	if err.Error() != cause.Error() || !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Errorf("ctxError = %v, want the cause, matching context.Canceled", err)
	}
	ctx, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := ctxError(ctx); err != context.Canceled {
		t.Errorf("ctxError without a cause = %v", err)
	}
}
