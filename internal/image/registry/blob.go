package registry

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Bounds of the waits between blob attempts.
const (
	// maxRetryDelay caps the exponential backoff.
	maxRetryDelay = 30 * time.Second
	// maxRetryAfter caps an honoured Retry-After header.
	maxRetryAfter = 2 * time.Minute
)

// retryPolicy says how often, and after which waits, a blob is asked for.
type retryPolicy struct {
	// attempts is the number of requests in all, at least 1.
	attempts int
	// delay is the wait after the first failure; it doubles after each
	// further one, up to maxDelay.
	delay, maxDelay time.Duration
}

// wait returns the pause after failed attempts (at least 1), or
// retryAfter if the registry asked for longer (capped at maxRetryAfter).
// The backoff has ±20% jitter, so that parallel downloads cut by the same
// network hiccup do not all come back at the same instant.
func (p retryPolicy) wait(failed int, retryAfter time.Duration) time.Duration {
	limit := max(p.maxDelay, p.delay)
	d := p.delay
	for i := 1; i < failed && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if d > 0 {
		d += time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	}
	if retryAfter > d {
		d = min(retryAfter, maxRetryAfter)
	}
	return d
}

// blobClient downloads the blobs of one repository on one endpoint.
//
// It does not use go-containerregistry's remote.Layer: that stream has no
// way to ask for a range, and it hashes internally, so its hash cannot go
// on after a cut. It does use go-containerregistry for everything else: the
// authenticated transport (transport.NewWithContext: ping, basic or bearer
// authentication, token refresh, HTTPS or HTTP for insecure registries)
// and the registry's error bodies (transport.CheckError).
type blobClient struct {
	repo name.Repository
	// label is the endpoint as Image.Source shows it.
	label string
	// host is the registry's host[:port] in URLs.
	host     string
	keychain authn.Keychain
	inner    http.RoundTripper
	retry    retryPolicy
	slots    chan struct{}
	log      *slog.Logger

	mu     sync.Mutex
	client *http.Client // made on first use; see httpClient
}

// blobClient returns the blob client of repo on the endpoint label.
func (s *session) blobClient(repo name.Repository, label string) *blobClient {
	return &blobClient{
		repo:     repo,
		label:    label,
		host:     repo.RegistryStr(),
		keychain: s.keychain,
		inner:    s.transport,
		retry:    s.retry,
		slots:    s.slots,
		log:      s.log,
	}
}

// httpClient returns the authenticated client, making it on first use. A
// failure is not kept: the next attempt tries again.
func (c *blobClient) httpClient(ctx context.Context) (*http.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client, nil
	}
	auth, err := authn.Resolve(ctx, c.keychain, c.repo)
	if err != nil {
		return nil, fmt.Errorf("finding credentials for %s: %w", c.host, err)
	}
	tr, err := transport.NewWithContext(ctx, c.repo.Registry, auth, c.inner, []string{c.repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	c.client = &http.Client{Transport: tr, CheckRedirect: checkBlobRedirect}
	return c.client, nil
}

// url returns the URL of the blob digest.
func (c *blobClient) url(digest v1.Hash) string {
	u := url.URL{Scheme: c.repo.Scheme(), Host: c.host, Path: "/v2/" + c.repo.RepositoryStr() + "/blobs/" + digest.String()}
	return u.String()
}

// open waits for a free slot and makes the first request for the blob
// (retrying as the policy says), and returns its stream.
func (c *blobClient) open(ctx context.Context, what string, digest v1.Hash, size int64) (io.ReadCloser, error) {
	if digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s %s: unsupported digest algorithm %q (want sha256)", what, digest, digest.Algorithm)
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
	r := &blobReader{
		ctx: ctx, c: c, what: what, digest: digest, size: size,
		short: shortDigest(digest), hash: sha256.New(),
	}
	if err := r.connect(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// shortDigest is "sha256:" and the first 12 hex digits, for messages.
func shortDigest(d v1.Hash) string {
	if len(d.Hex) <= 12 {
		return d.String()
	}
	return d.Algorithm + ":" + d.Hex[:12] + "…"
}

// blobReader is one blob's stream, over as many requests as it takes. Every
// byte handed to the caller has been hashed; off counts them. After a
// failure, the next request asks for the range from off on, so the hash
// just goes on. A registry that answers 200 instead of 206 sends the whole
// blob: the first off bytes of it are skipped (they were hashed already),
// and the final digest check covers both parts.
type blobReader struct {
	ctx    context.Context
	c      *blobClient
	what   string // "layer" or "config"
	digest v1.Hash
	short  string
	size   int64

	hash hash.Hash
	off  int64 // bytes handed to the caller (and hashed)

	body io.ReadCloser // the current response's body; nil between requests
	from string        // host[:port] that serves body
	skip int64         // bytes of body to drop (a 200 answer to a resume)

	attempts int   // requests made
	noRange  bool  // the registry does not do ranges for this blob
	last     error // why the last attempt failed
	err      error // sticky: io.EOF at the end, or the final error

	closeOnce sync.Once
}

// Read implements io.Reader.
func (r *blobReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.body == nil {
			if r.off == r.size {
				// Everything arrived, but not the end of the response.
				r.err = r.finish()
				return 0, r.err
			}
			if err := r.connect(); err != nil {
				r.err = err
				return 0, err
			}
		}
		if r.skip > 0 {
			n, err := io.CopyN(io.Discard, r.body, r.skip)
			r.skip -= n
			if err != nil {
				r.failed(r.readError(err, r.off-r.skip))
			}
			continue
		}
		if len(p) == 0 {
			return 0, nil
		}
		// One byte more than is left, to notice a longer blob.
		want := min(int64(len(p)), r.size-r.off+1)
		n, err := r.body.Read(p[:want])
		if r.off+int64(n) > r.size {
			n = int(r.size - r.off)
			r.err = &contentError{fmt.Sprintf("%s %s from %s is longer than the %d bytes its descriptor says", r.what, r.digest, r.from, r.size)}
			r.closeBody()
		}
		if n > 0 {
			r.hash.Write(p[:n])
			r.off += int64(n)
		}
		if r.err != nil {
			return n, r.err
		}
		switch {
		case errors.Is(err, io.EOF) && r.off == r.size:
			r.closeBody()
			r.err = r.finish()
			return n, r.err
		case errors.Is(err, io.EOF):
			r.failed(r.withBlob(r.from, fmt.Errorf("the response ended after %d of %d bytes: %w", r.off, r.size, io.ErrUnexpectedEOF)))
		case err != nil:
			r.failed(r.readError(err, r.off))
		}
		if n > 0 || r.err != nil {
			return n, r.err
		}
	}
}

// finish checks the digest of the r.size bytes read.
func (r *blobReader) finish() error {
	got := hex.EncodeToString(r.hash.Sum(nil))
	if got == r.digest.Hex {
		return io.EOF
	}
	note := ""
	if r.attempts > 1 {
		note = fmt.Sprintf(" (received in %d requests)", r.attempts)
	}
	return &contentError{fmt.Sprintf("%s %s from %s failed its checksum: the %d bytes received%s hash to sha256:%s; the registry serves corrupt data", r.what, r.digest, r.c.label, r.size, note, got)}
}

// readError describes a body read that failed at byte at of the blob.
func (r *blobReader) readError(err error, at int64) error {
	var se *StallError
	if errors.As(err, &se) {
		return r.withBlob(r.from, se)
	}
	return r.withBlob(r.from, fmt.Errorf("connection lost at byte %d of %d: %w", at, r.size, err))
}

// failed ends the current response after err; the next Read retries or
// gives up.
func (r *blobReader) failed(err error) {
	r.closeBody()
	if r.ctx.Err() != nil {
		r.err = r.canceled()
		return
	}
	if !retryable(err) {
		r.err = err
		return
	}
	r.last = err
}

func (r *blobReader) closeBody() {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
}

// connect makes requests until one answers with the blob (from r.off on),
// waiting between them, or the attempts are used up.
func (r *blobReader) connect() error {
	for {
		if r.ctx.Err() != nil {
			return r.canceled()
		}
		if r.attempts >= r.c.retry.attempts {
			return r.giveUp()
		}
		if r.attempts > 0 {
			d := r.c.retry.wait(r.attempts, retryAfterOf(r.last))
			r.c.log.Warn("blob download failed; trying again",
				"blob", r.digest.String(), "from", r.c.label, "attempt", r.attempts+1, "of", r.c.retry.attempts,
				"received", r.off, "size", r.size, "wait", d, "err", r.last)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return r.canceled()
			}
		}
		r.attempts++
		err := r.request()
		if err == nil {
			return nil
		}
		if r.ctx.Err() != nil {
			return r.canceled()
		}
		if !retryable(err) {
			return err
		}
		r.last = err
	}
}

// canceled is the error once r.ctx has ended.
func (r *blobReader) canceled() error {
	return fmt.Errorf("downloading %s %s from %s: %w", r.what, r.short, r.c.label, ctxError(r.ctx))
}

// giveUp is the error once the attempts are used up.
func (r *blobReader) giveUp() error {
	return fmt.Errorf("%w (gave up after %d attempts, %d of %d bytes received); check the network and the registry, then try again", r.last, r.attempts, r.off, r.size)
}

// request asks for the blob from r.off on, and sets r.body.
func (r *blobReader) request() error {
	client, err := r.c.httpClient(r.ctx)
	if err != nil {
		return r.withBlob(r.c.host, stripURL(err))
	}
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.c.url(r.digest), nil)
	if err != nil {
		return err
	}
	// The bytes as stored: net/http would otherwise ask for gzip and
	// undo it, and the digest is of the bytes as stored.
	req.Header.Set("Accept-Encoding", "identity")
	ranged := r.off > 0 && !r.noRange
	if ranged {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", r.off))
	}
	resp, err := client.Do(req)
	if err != nil {
		return r.withBlob(failedHost(err, r.c.host), stripURL(err))
	}
	from := resp.Request.URL.Host
	fail := func(err error) error {
		resp.Body.Close()
		return r.withBlob(from, err)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && ranged:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != r.off || (total >= 0 && total != r.size) ||
			(resp.ContentLength >= 0 && resp.ContentLength != r.size-r.off) {
			// Asking for the whole blob again is safe; this is not.
			r.noRange = true
			return fail(fmt.Errorf("the answer to a request for bytes %d- has Content-Range %q and Content-Length %d; asking for the whole blob instead", r.off, resp.Header.Get("Content-Range"), resp.ContentLength))
		}
		r.c.log.Debug("resuming blob download", "blob", r.digest.String(), "from", r.c.label, "offset", r.off)
	case resp.StatusCode == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != r.size {
			resp.Body.Close()
			return &contentError{fmt.Sprintf("%s %s from %s: Content-Length %d does not match the %d bytes its descriptor says", r.what, r.digest, from, resp.ContentLength, r.size)}
		}
		if r.off > 0 {
			// The registry ignores Range: skip what was read before.
			r.skip, r.noRange = r.off, true
			r.c.log.Debug("registry ignores Range; downloading the blob from the start again", "blob", r.digest.String(), "from", r.c.label, "skip", r.off)
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && ranged:
		r.noRange = true
		return fail(fmt.Errorf("the registry refused a request for bytes %d- (HTTP 416); asking for the whole blob instead", r.off))
	default:
		cerr := transport.CheckError(resp, http.StatusOK)
		retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		resp.Body.Close()
		var te *transport.Error
		if !errors.As(cerr, &te) {
			return r.withBlob(from, cerr)
		}
		return r.withBlob(from, &statusError{te: te, retryAfter: retryAfter})
	}
	r.body, r.from = resp.Body, from
	return nil
}

// withBlob names the host that failed and the blob: "registry
// 127.0.0.1:5000: no data for 30s while downloading layer sha256:…".
func (r *blobReader) withBlob(host string, err error) error {
	what := "registry"
	if host != r.c.host {
		what = "blob storage" // the registry redirected to it
	}
	if _, ok := err.(*StallError); ok {
		// Its message starts with the host.
		return fmt.Errorf("%s %w while downloading %s %s", what, err, r.what, r.short)
	}
	return fmt.Errorf("%s %s: %w while downloading %s %s", what, host, err, r.what, r.short)
}

// Close implements io.Closer. It frees the stream's slot.
func (r *blobReader) Close() error {
	r.closeBody()
	r.closeOnce.Do(func() { <-r.c.slots })
	return nil
}

// contentError is a blob that is not what its descriptor says; asking again
// does not help.
type contentError struct{ msg string }

func (e *contentError) Error() string { return e.msg }

// statusError is an HTTP error answer to a blob request, shown without the
// request's URL.
type statusError struct {
	te         *transport.Error
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.te.StatusCode, http.StatusText(e.te.StatusCode))
	if len(e.te.Errors) > 0 {
		msg += ": " + e.te.Errors[0].String()
	}
	if e.retryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.retryAfter)
	}
	return msg
}

func (e *statusError) Unwrap() error { return e.te }

// retryableStatus reports whether an HTTP status may go away by asking
// again: 408, 429 and the server errors but 501 and 505 (the same set
// go-containerregistry retries for manifests, as a rule).
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code <= 599
}

// retryAfterOf returns the Retry-After of an HTTP error answer in err.
func retryAfterOf(err error) time.Duration {
	var se *statusError
	if errors.As(err, &se) {
		return se.retryAfter
	}
	return 0
}

// parseRetryAfter parses a Retry-After header: seconds, or an HTTP date.
// It returns 0 for none, or one that cannot be parsed or is past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil || !t.After(now) {
		return 0
	}
	return t.Sub(now)
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*",
// returned as -1).
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, e, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t <= end {
			return 0, 0, false
		}
		total = t
	}
	return start, total, true
}

// retryable reports whether a failed blob attempt may succeed when made
// again: network failures, stalls and 408/429/5xx answers may; redirect
// loops, refused redirects, TLS and policy errors, other HTTP errors,
// unknown hosts and wrong content do not.
func retryable(err error) bool {
	var (
		stall    *StallError
		redirect *RedirectError
		refused  *redirectRefusedError
		plain    *plainHTTPError
		content  *contentError
		te       *transport.Error
		dns      *net.DNSError
		rhe      tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &stall):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.As(err, &redirect), errors.As(err, &refused), errors.As(err, &plain), errors.As(err, &content):
		return false
	case isTLSVerifyError(err), errors.As(err, &rhe), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return false
	case errors.As(err, &te):
		return retryableStatus(te.StatusCode)
	case errors.As(err, &dns):
		return !dns.IsNotFound
	}
	return true
}

// stripURL drops the URL net/http puts in front of a request's error
// (*url.Error): it may carry a signed query string of blob storage, and
// the messages here name the host and blob instead.
func stripURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// failedHost returns the host of the URL in a request's error, or def.
func failedHost(err error, def string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
			return u.Host
		}
	}
	return def
}

// redirectRefusedError is a blob redirect to an internal address.
type redirectRefusedError struct{ from, to string }

func (e *redirectRefusedError) Error() string {
	return fmt.Sprintf("refusing the redirect from %s to the internal address %s: a registry must not send clients to private, loopback or link-local addresses", e.from, e.to)
}

// checkBlobRedirect refuses a redirect to another host that is a private,
// loopback, link-local or unspecified IP address, as go-containerregistry
// does for the blobs it fetches (its check is not exported): a registry
// must not point mbctl at a cloud metadata service or another internal
// address. Redirects on the same host are always allowed. The number of
// redirects is bounded by policyTransport.
func checkBlobRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	from, to := via[0].URL.Hostname(), req.URL.Hostname()
	if strings.EqualFold(from, to) || !internalAddress(to) {
		return nil
	}
	return &redirectRefusedError{from: via[0].URL.Host, to: req.URL.Host}
}

// internalAddress reports whether host is an IP address in a private,
// loopback, link-local or unspecified range, or a number that is not
// written the standard way ("127.1", "0x7f000001", "2130706433"), which
// some resolvers take for an address: those are refused whatever they
// mean.
func internalAddress(host string) bool {
	host, _, _ = strings.Cut(host, "%")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified()
	}
	if host == "" {
		return false
	}
	for part := range strings.SplitSeq(host, ".") {
		if !isNumber(part) {
			return false
		}
	}
	return true
}

// isNumber reports whether s is a decimal, octal or 0x-hex number.
func isNumber(s string) bool {
	digits := "0123456789"
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		s, digits = h, "0123456789abcdef"
	}
	if s == "" {
		return false
	}
	for _, c := range strings.ToLower(s) {
		if !strings.ContainsRune(digits, c) {
			return false
		}
	}
	return true
}

// ctxError is the error of an ended ctx: its cause ("interrupt signal
// received") in the message, and both the cause and ctx.Err() in the chain,
// so that errors.Is(err, context.Canceled) holds.
func ctxError(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return &causeError{err: err, cause: cause}
}

type causeError struct{ err, cause error }

func (e *causeError) Error() string   { return e.cause.Error() }
func (e *causeError) Unwrap() []error { return []error{e.cause, e.err} }
