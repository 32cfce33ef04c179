package registry

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// distroCABundles returns the CA bundles of the common distributions, the
// list Go's crypto/x509 reads on Linux when SSL_CERT_FILE is not set.
func distroCABundles() []string {
	return []string{
		"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Arch, Gentoo
		"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
		"/etc/ssl/ca-bundle.pem",                            // openSUSE
		"/etc/pki/tls/cacert.pem",                           // OpenELEC
		"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
		"/etc/ssl/cert.pem",                                 // Alpine
	}
}

// netPolicy decides which hosts may be reached over plain HTTP and which
// skip TLS verification.
type netPolicy struct {
	// insecure holds the Options.Insecure entries, lower case: "host" (any
	// port) or "host:port".
	insecure []string
	// plainMirrors holds the host[:port] of mirrors configured with an
	// http:// URL.
	plainMirrors map[string]bool
}

// isLoopback reports whether host (without port) is localhost, in
// 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// listedInsecure reports whether hostport ("host" or "host:port") matches
// an Options.Insecure entry. defaultPort is used when hostport has none.
func (p netPolicy) listedInsecure(hostport, defaultPort string) bool {
	hostport = strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), defaultPort
	}
	for _, e := range p.insecure {
		if eh, ep, err := net.SplitHostPort(e); err == nil {
			if eh == host && ep == port {
				return true
			}
		} else if strings.TrimSuffix(strings.TrimPrefix(e, "["), "]") == host {
			return true
		}
	}
	return false
}

// plainHTTPAllowed reports whether hostport may be reached over plain
// HTTP: loopback hosts, Options.Insecure entries and http:// mirrors.
func (p netPolicy) plainHTTPAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return isLoopback(host) || p.plainMirrors[strings.ToLower(hostport)] || p.listedInsecure(hostport, "80")
}

// skipVerify reports whether TLS certificates of hostport go unverified:
// only for Options.Insecure entries, as docker's insecure-registries.
func (p netPolicy) skipVerify(hostport string) bool {
	return p.listedInsecure(hostport, "443")
}

// plainHTTPError is returned for a plain HTTP request the policy forbids.
type plainHTTPError struct{ host string }

func (e *plainHTTPError) Error() string {
	return fmt.Sprintf("refusing plain HTTP to %s: only loopback registries and those in registries.insecure may be reached without TLS; add %q there if it has no HTTPS", e.host, e.host)
}

// policyTransport sends requests through one shared *http.Transport, or
// through a second one that skips TLS verification for insecure hosts, and
// refuses plain HTTP the policy does not allow. It sees every request:
// registries, mirrors, token servers and blob redirects, and so it is also
// where the network limits are kept that no client above it may forget: a
// bound on redirects (go-containerregistry's clients set a CheckRedirect of
// their own, which lifts net/http's default limit of 10 and lets a loop go
// on), and timeouts for response headers and for a body that stops
// arriving (see timed).
type policyTransport struct {
	policy   netPolicy
	verified *http.Transport
	// unverified is nil when no registry is listed as insecure.
	unverified *http.Transport
	// headerTimeout and idleTimeout are the response-header and idle-read
	// timeouts; 0 turns one off.
	headerTimeout, idleTimeout time.Duration
	// maxRedirects is how many redirects one request may follow.
	maxRedirects int
}

// RoundTrip implements http.RoundTripper.
func (t *policyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := checkRedirects(req, t.maxRedirects); err != nil {
		closeBody(req)
		return nil, err
	}
	switch req.URL.Scheme {
	case "http":
		if !t.policy.plainHTTPAllowed(req.URL.Host) {
			closeBody(req)
			return nil, &plainHTTPError{host: req.URL.Host}
		}
		return t.timed(t.verified, req)
	case "https":
		if t.unverified != nil && t.policy.skipVerify(req.URL.Host) {
			return t.timed(t.unverified, req)
		}
		return t.timed(t.verified, req)
	default:
		closeBody(req)
		return nil, fmt.Errorf("unsupported URL scheme %q for %s", req.URL.Scheme, req.URL.Host)
	}
}

// StallError reports a server that sent nothing for too long: no response
// headers within Options.ResponseHeaderTimeout, or no body bytes within
// Options.IdleTimeout. It is a net.Error whose Timeout is true; blob
// downloads count it as a failed attempt and resume.
type StallError struct {
	// Host is the host[:port] that stalled: the registry, or the blob
	// storage it redirected to.
	Host string
	// Waiting is what was awaited: "response headers" or "data".
	Waiting string
	// After is the timeout that ran out.
	After time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("%s: no %s for %s", e.Host, e.Waiting, e.After)
}

// Timeout implements net.Error.
func (e *StallError) Timeout() bool { return true }

// Temporary implements net.Error; go-containerregistry retries temporary
// errors of manifest requests.
func (e *StallError) Temporary() bool { return true }

// watchdog cancels one request when a timeout runs out and remembers why.
type watchdog struct {
	host   string
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	err    *StallError
}

// fire records the stall and cancels the request.
func (w *watchdog) fire(waiting string, after time.Duration) {
	w.mu.Lock()
	if w.err == nil {
		w.err = &StallError{Host: w.host, Waiting: waiting, After: after}
	}
	err := w.err
	w.mu.Unlock()
	w.cancel(err)
}

// fired returns the stall, or nil if no timeout ran out.
func (w *watchdog) fired() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		return nil
	}
	return w.err
}

// timed sends req through rt under the response-header and idle-read
// timeouts. net/http's Transport.ResponseHeaderTimeout covers only the
// first and answers with an unexported error that names neither host nor
// timeout, and net/http has no idle-read timeout at all, so both are done
// here, alike: a timer cancels the request's context, and the error is a
// StallError.
func (t *policyTransport) timed(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	if t.headerTimeout <= 0 && t.idleTimeout <= 0 {
		return rt.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{host: req.URL.Host, cancel: cancel}
	var stop func() bool
	if t.headerTimeout > 0 {
		stop = time.AfterFunc(t.headerTimeout, func() { w.fire("response headers", t.headerTimeout) }).Stop
	}
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if stop != nil {
		stop()
	}
	if serr := w.fired(); serr != nil {
		if err == nil {
			resp.Body.Close()
		}
		cancel(serr)
		return nil, serr
	}
	if err != nil {
		cancel(err)
		return nil, err
	}
	resp.Body = &idleBody{body: resp.Body, w: w, idle: t.idleTimeout}
	return resp, nil
}

// idleBody is a response body whose Read fails with a StallError when no
// byte comes for idle. The timer runs only while a Read waits: a caller
// that is slow to read is not taken for a stalled server.
type idleBody struct {
	body  io.ReadCloser
	w     *watchdog
	idle  time.Duration
	timer *time.Timer
}

// Read implements io.Reader.
func (b *idleBody) Read(p []byte) (int, error) {
	if b.idle > 0 {
		if b.timer == nil {
			b.timer = time.AfterFunc(b.idle, func() { b.w.fire("data", b.idle) })
		} else {
			b.timer.Reset(b.idle)
		}
	}
	n, err := b.body.Read(p)
	if b.timer != nil {
		b.timer.Stop()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if serr := b.w.fired(); serr != nil {
			return n, serr
		}
	}
	return n, err
}

// Close implements io.Closer; it ends the request's context.
func (b *idleBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.body.Close()
	b.w.cancel(nil)
	return err
}

// RedirectError reports a redirect loop, or a request redirected more
// often than Options.MaxRedirects allows. The URLs are shown without
// query strings, which may hold signatures or tokens.
type RedirectError struct {
	// Chain is the URLs followed, first the one asked for, each without
	// user info, query and fragment.
	Chain []string
	// Loop is the index in Chain where the loop starts (the last URL is
	// the same as this one), or -1 when no URL repeats.
	Loop int
	// Max is the redirect limit.
	Max int
}

func (e *RedirectError) Error() string {
	if e.Loop >= 0 {
		msg := "redirect loop: " + strings.Join(e.Chain[e.Loop:], " -> ")
		if e.Loop > 0 {
			msg += " (reached from " + strings.Join(e.Chain[:e.Loop], " -> ") + ")"
		}
		return msg
	}
	shown := e.Chain
	if len(shown) > 6 {
		shown = append(append(slices.Clip(shown[:3]), "..."), shown[len(shown)-3:]...)
	}
	return fmt.Sprintf("more than %d redirects: %s", e.Max, strings.Join(shown, " -> "))
}

// checkRedirects fails a request that comes from following more than max
// redirects, or that repeats a URL of its redirect chain (it would be
// answered the same way again). net/http sets Request.Response on every
// request it makes to follow a redirect, and Response.Request is the
// request before: the chain is there.
func checkRedirects(req *http.Request, max int) error {
	if req.Response == nil {
		return nil
	}
	var chain []string
	for r := req; r != nil; {
		chain = append(chain, safeURL(r.URL.String()))
		if r.Response == nil {
			break
		}
		r = r.Response.Request
	}
	slices.Reverse(chain)
	last := chain[len(chain)-1]
	if i := slices.Index(chain, last); i < len(chain)-1 {
		return &RedirectError{Chain: chain, Loop: i, Max: max}
	}
	if len(chain)-1 > max {
		return &RedirectError{Chain: chain, Loop: -1, Max: max}
	}
	return nil
}

// closeBody closes a request body, as a RoundTripper must on error.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// newPolicyTransport builds the transport for o. jobs sizes the idle
// connection pool.
func newPolicyTransport(o Options, policy netPolicy, jobs int, log *slog.Logger) (*policyTransport, error) {
	roots, err := rootCAs(o.CAFile, log)
	if err != nil {
		return nil, err
	}
	t := &policyTransport{
		policy:        policy,
		verified:      newHTTPTransport(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, jobs),
		headerTimeout: orDefault(o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		idleTimeout:   orDefault(o.IdleTimeout, DefaultIdleTimeout),
		maxRedirects:  cmp.Or(o.MaxRedirects, DefaultMaxRedirects),
	}
	if len(policy.insecure) > 0 {
		t.unverified = newHTTPTransport(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, jobs) //nolint:gosec // registries.insecure asks for it
	}
	return t, nil
}

// newHTTPTransport returns an *http.Transport with the proxy from the
// environment and enough idle connections per host for parallel layer
// downloads.
func newHTTPTransport(tc *tls.Config, jobs int) *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   max(8, 2*jobs),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// rootCAs returns the system roots plus the certificates in $SSL_CERT_FILE
// and caFile. Go replaces the distribution's bundle by $SSL_CERT_FILE;
// here both are trusted. An unreadable $SSL_CERT_FILE is logged and
// skipped; an unreadable caFile is an error.
func rootCAs(caFile string, log *slog.Logger) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		log.Debug("no system certificate pool; trusting only the configured CAs", "err", err)
		pool = x509.NewCertPool()
	}
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		for _, bundle := range distroCABundles() {
			if b, err := os.ReadFile(bundle); err == nil && pool.AppendCertsFromPEM(b) {
				break
			}
		}
		b, err := os.ReadFile(f)
		switch {
		case err != nil:
			log.Warn("ignoring SSL_CERT_FILE", "err", err)
		case !pool.AppendCertsFromPEM(b):
			log.Warn("ignoring SSL_CERT_FILE: no PEM certificate in it", "path", f)
		}
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading the registry CA file (registries.ca_file): %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("registry CA file %s (registries.ca_file) holds no PEM certificate", caFile)
		}
	}
	return pool, nil
}

// mirrorEndpoint is a parsed Options.Mirrors entry.
type mirrorEndpoint struct {
	// label is the entry as configured, without a trailing slash.
	label string
	// host is the mirror's host[:port].
	host string
	// plain is true for an http:// mirror.
	plain bool
}

// ValidateMirror checks a mirror endpoint as Resolve will use it, for the
// configuration to reject a bad one when it is read.
func ValidateMirror(s string) error {
	_, err := parseMirror(s)
	return err
}

// parseMirror parses a mirror endpoint "https://host[:port]" or
// "http://host[:port]"; a path "/" or "/v2" is allowed, other paths are
// not (the repository path is the same as on the origin).
func parseMirror(s string) (mirrorEndpoint, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return mirrorEndpoint{}, fmt.Errorf("mirror %q: want an endpoint like https://mirror.example.com", safeURL(s))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return mirrorEndpoint{}, fmt.Errorf("mirror %q: credentials, query or fragment are not allowed in a mirror URL; log in to the mirror with docker or podman instead", safeURL(s))
	}
	switch strings.TrimSuffix(u.Path, "/") {
	case "", "/v2":
	default:
		return mirrorEndpoint{}, fmt.Errorf("mirror %q: path prefixes are not supported; the mirror must serve the registry's repository paths under /v2/", s)
	}
	return mirrorEndpoint{
		label: u.Scheme + "://" + u.Host,
		host:  strings.ToLower(u.Host),
		plain: u.Scheme == "http",
	}, nil
}

// safeURL returns s without user info, query and fragment, for errors.
func safeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// Keep what surely is not a secret: the part before any '@' or '?'.
		if i := strings.IndexAny(s, "@?#"); i >= 0 {
			return s[:i] + "..."
		}
		return s
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// orDefault returns d for zero, 0 (off) for a negative value, else v.
func orDefault(v, d time.Duration) time.Duration {
	switch {
	case v == 0:
		return d
	case v < 0:
		return 0
	}
	return v
}
