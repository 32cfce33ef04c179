// Package faultproxy is an HTTP proxy for tests that sits on 127.0.0.1 in
// front of a real server (the registry of internal/testbed/registry) and
// breaks chosen responses the way networks and misconfigured servers do: it
// cuts a body after N bytes, stalls after N bytes, never sends the response
// headers, ignores Range, redirects in a loop, or answers with an HTTP
// error. It counts the body bytes it served per path and keeps a log of
// the requests, so that a test can tell how much a client fetched.
//
// Everything else is passed through unchanged, with the client's Host
// header, so that URLs the server builds point at the proxy. The package
// does not import testing; faultproxy_testing.go adds StartT for tests.
package faultproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is what a Rule does to the requests it matches.
type Fault int

const (
	// Cut sends Rule.After bytes of the body, then closes the connection.
	Cut Fault = iota + 1
	// Stall sends Rule.After bytes of the body, then nothing more until the
	// client gives up (or the proxy is closed).
	Stall
	// HoldHeaders never sends the response headers; the connection stays
	// open until the client gives up.
	HoldHeaders
	// IgnoreRange drops the Range header before passing the request on, as
	// a server without range support would: the answer is 200 with the
	// whole body. It combines with the other faults.
	IgnoreRange
	// RedirectLoop answers 307 to LoopPath+"1", which redirects to
	// LoopPath+"2", which redirects back to LoopPath+"1", and so on. The
	// Location headers carry the query "?X-Amz-Signature=" + LoopSecret,
	// which a client must never show.
	RedirectLoop
	// Status answers Rule.Code (default 503) with Rule.RetryAfter as the
	// Retry-After header, if set, and a registry error body.
	Status
	// Throttle sends the body at Rule.Rate bytes a second (a slow
	// registry), after Rule.After bytes at full speed.
	Throttle
)

func (f Fault) String() string {
	switch f {
	case Cut:
		return "cut"
	case Stall:
		return "stall"
	case HoldHeaders:
		return "hold-headers"
	case IgnoreRange:
		return "ignore-range"
	case RedirectLoop:
		return "redirect-loop"
	case Status:
		return "status"
	case Throttle:
		return "throttle"
	case 0:
		return "none"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// LoopPath is where RedirectLoop sends clients round.
const LoopPath = "/faultproxy/loop/"

// LoopSecret is in the query of every RedirectLoop Location, standing for
// the signature of a blob storage URL.
const LoopSecret = "faultproxy-secret-signature"

// Rule selects requests and the fault to apply to them.
type Rule struct {
	// Path matches requests whose URL path contains it; "" matches all.
	Path string
	// Method matches requests with this method; "" matches all.
	Method string
	// Fault is what to do.
	Fault Fault
	// After is how many body bytes Cut and Stall send first.
	After int64
	// Times is how many matching requests the rule applies to; 0: all.
	Times int
	// Code is the HTTP status of Status (default 503).
	Code int
	// RetryAfter is the Retry-After header of Status ("" for none).
	RetryAfter string
	// Rate is Throttle's bytes a second.
	Rate int64
}

// Armed is a rule added to a proxy.
type Armed struct {
	rule  Rule
	p     *Proxy
	fired int // under p.mu
}

// Fired returns how many requests the rule was applied to.
func (a *Armed) Fired() int {
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	return a.fired
}

// Request is one request the proxy handled.
type Request struct {
	Method string
	Path   string
	// Range is the Range header the client sent ("" for none).
	Range string
	// Fault is the fault applied to the response (0 for none; IgnoreRange
	// shows only when it was the only one).
	Fault Fault
	// Status is the HTTP status sent, 0 if none was.
	Status int
	// Bytes is how many body bytes were sent.
	Bytes int64
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	target   string
	ln       net.Listener
	srv      *http.Server
	upstream *http.Client
	done     chan struct{}
	handlers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex
	rules    []*Armed
	served   map[string]int64
	requests []*Request
	arrived  chan struct{} // closed (and replaced) when a request comes
}

// Start starts a proxy on 127.0.0.1 for the plain-HTTP server at target
// ("host:port"). Stop it with Close.
func Start(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy target %q: want host:port: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		target:  target,
		ln:      ln,
		done:    make(chan struct{}),
		served:  map[string]int64{},
		arrived: make(chan struct{}),
		upstream: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // never an environment proxy
				DisableCompression:  true,
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     30 * time.Second,
			},
			// Redirects of the server go to the client.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // returns http.ErrServerClosed on Close
	return p, nil
}

// Addr returns the proxy's "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Add arms a rule. Rules apply in the order they were added: every
// matching IgnoreRange rule, and the first matching rule of another fault.
func (p *Proxy) Add(r Rule) *Armed {
	a := &Armed{rule: r, p: p}
	p.mu.Lock()
	p.rules = append(p.rules, a)
	p.mu.Unlock()
	return a
}

// Clear disarms every rule.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Served returns the body bytes served for the paths that contain path
// ("" for all). Bytes are counted as they are handed to the connection, so
// a client never has more than Served says.
func (p *Proxy) Served(path string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for k, v := range p.served {
		if strings.Contains(k, path) {
			n += v
		}
	}
	return n
}

// Requests returns the requests whose path contains path ("" for all), in
// the order they came.
func (p *Proxy) Requests(path string) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Request
	for _, r := range p.requests {
		if strings.Contains(r.Path, path) {
			out = append(out, *r)
		}
	}
	return out
}

// WaitRequests waits until n requests whose path contains path ("" for
// all) have arrived, or ctx ends.
func (p *Proxy) WaitRequests(ctx context.Context, path string, n int) error {
	for {
		p.mu.Lock()
		got := 0
		for _, r := range p.requests {
			if strings.Contains(r.Path, path) {
				got++
			}
		}
		arrived := p.arrived
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d requests for %q (%d came): %w", n, path, got, ctx.Err())
		}
	}
}

// Close stops the proxy: stalled and held responses end, connections are
// closed, and Close waits for the handlers to return.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		close(p.done)
		p.closeErr = p.srv.Close()
		p.handlers.Wait()
		p.upstream.CloseIdleConnections()
	})
	return p.closeErr
}

// match returns the fault for req (0 for none) and whether to drop its
// Range header, and counts the rules applied.
func (p *Proxy) match(req *http.Request) (Rule, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		fault       Rule
		ignoreRange bool
	)
	for _, a := range p.rules {
		r := a.rule
		if (r.Path != "" && !strings.Contains(req.URL.Path, r.Path)) ||
			(r.Method != "" && r.Method != req.Method) ||
			(r.Times > 0 && a.fired >= r.Times) {
			continue
		}
		switch {
		case r.Fault == IgnoreRange:
			ignoreRange = true
		case fault.Fault == 0:
			fault = r
		default:
			continue
		}
		a.fired++
	}
	return fault, ignoreRange
}

// record starts the log entry of req.
func (p *Proxy) record(req *http.Request, f Fault) *Request {
	e := &Request{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range"), Fault: f}
	p.mu.Lock()
	p.requests = append(p.requests, e)
	close(p.arrived)
	p.arrived = make(chan struct{})
	p.mu.Unlock()
	return e
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Done()
	if strings.HasPrefix(req.URL.Path, LoopPath) {
		p.loop(w, req)
		return
	}
	rule, ignoreRange := p.match(req)
	shown := rule.Fault
	if shown == 0 && ignoreRange {
		shown = IgnoreRange
	}
	e := p.record(req, shown)
	switch rule.Fault {
	case HoldHeaders:
		p.wait(req.Context())
		abort(w)
		return
	case RedirectLoop:
		p.redirect(w, e, LoopPath+"1")
		return
	case Status:
		code := rule.Code
		if code == 0 {
			code = http.StatusServiceUnavailable
		}
		if rule.RetryAfter != "" {
			w.Header().Set("Retry-After", rule.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		p.setStatus(e, code)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"faultproxy: HTTP %d"}]}`+"\n", code)
		return
	}

	out, err := http.NewRequestWithContext(req.Context(), req.Method, "http://"+p.target+req.URL.RequestURI(), req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out.Header = req.Header.Clone()
	out.Host = req.Host
	out.ContentLength = req.ContentLength
	removeHopByHop(out.Header)
	if ignoreRange {
		out.Header.Del("Range")
		out.Header.Del("If-Range")
	}
	resp, err := p.upstream.Do(out)
	if err != nil {
		p.setStatus(e, http.StatusBadGateway)
		http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	removeHopByHop(w.Header())
	p.setStatus(e, resp.StatusCode)
	w.WriteHeader(resp.StatusCode)
	cw := &countingWriter{w: w, p: p, e: e}
	switch rule.Fault {
	case Cut, Stall:
		_, _ = io.CopyN(cw, resp.Body, rule.After)
		_ = http.NewResponseController(w).Flush()
		if rule.Fault == Stall {
			p.wait(req.Context())
		}
		abort(w)
	case Throttle:
		_, _ = io.CopyN(cw, resp.Body, rule.After)
		throttle(req.Context(), cw, resp.Body, rule.Rate, w)
	default:
		_, _ = io.Copy(cw, resp.Body)
	}
}

// throttle copies r to w at rate bytes a second, in twentieths of a
// second, until r ends or ctx is done.
func throttle(ctx context.Context, w io.Writer, r io.Reader, rate int64, flush http.ResponseWriter) {
	chunk := max(rate/20, 1)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := io.CopyN(w, r, chunk); err != nil {
			return
		}
		_ = http.NewResponseController(flush).Flush()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// loop serves the redirect loop.
func (p *Proxy) loop(w http.ResponseWriter, req *http.Request) {
	e := p.record(req, RedirectLoop)
	next := "1"
	if strings.TrimPrefix(req.URL.Path, LoopPath) == "1" {
		next = "2"
	}
	p.redirect(w, e, LoopPath+next)
}

func (p *Proxy) redirect(w http.ResponseWriter, e *Request, path string) {
	w.Header().Set("Location", path+"?X-Amz-Signature="+LoopSecret)
	p.setStatus(e, http.StatusTemporaryRedirect)
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func (p *Proxy) setStatus(e *Request, code int) {
	p.mu.Lock()
	e.Status = code
	p.mu.Unlock()
}

// wait returns when the client has gone or the proxy is closed.
func (p *Proxy) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-p.done:
	}
}

// abort closes the connection under a response at once.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	_ = conn.Close()
}

// removeHopByHop deletes the headers a proxy does not pass on (RFC 9110
// 7.6.1).
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for k := range strings.SplitSeq(f, ",") {
			h.Del(strings.TrimSpace(k))
		}
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		h.Del(k)
	}
}

// countingWriter counts the body bytes of one response. It counts them
// before they are written, so that a client never sees more than is
// counted, and takes back what a failed write did not send.
type countingWriter struct {
	w io.Writer
	p *Proxy
	e *Request
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.add(int64(len(b)))
	n, err := c.w.Write(b)
	if n < len(b) {
		c.add(int64(n - len(b)))
	}
	return n, err
}

func (c *countingWriter) add(n int64) {
	c.p.mu.Lock()
	c.p.served[c.e.Path] += n
	c.e.Bytes += n
	c.p.mu.Unlock()
}
