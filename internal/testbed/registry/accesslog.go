package registry

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// syncParam is the query parameter of the marker request CountRequests sends
// to know that the log is complete up to now.
const syncParam = "mbctl-testbed-sync"

// internalUserAgent marks the requests the fixture itself sends (readiness
// probes, log markers); Requests leaves them out.
const internalUserAgent = "mbctl-testbed-registry"

// syncTimeout bounds the wait for the marker request to appear in the log.
const syncTimeout = 5 * time.Second

// Request is one line of the registry's access log.
type Request struct {
	// Method is the HTTP method, e.g. "GET" or "HEAD".
	Method string
	// URI is the request URI as sent, path and query, e.g.
	// "/v2/app/blobs/sha256:abc...".
	URI string
	// Status is the HTTP status of the response.
	Status int
}

// accessLine matches the Apache combined log format that distribution writes
// to stdout for every request, e.g.
//
//	127.0.0.1 - - [28/Nov/2026:09:35:19 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
func accessLine() *regexp.Regexp {
	return regexp.MustCompile(`^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) `)
}

// Requests returns every request in the access log so far, in log order,
// without the fixture's own readiness probes and marker requests. Each request appears once,
// whatever its status (401 challenges included). A request whose response
// was just received may not be logged yet; CountRequests waits for that.
func (r *Registry) Requests() ([]Request, error) {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return nil, fmt.Errorf("reading registry log: %w", err)
	}
	return parseAccessLog(bytes.NewReader(b))
}

// parseAccessLog extracts the access log lines from the registry output.
func parseAccessLog(rd io.Reader) ([]Request, error) {
	re := accessLine()
	var reqs []Request
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasSuffix(line, `"`+internalUserAgent+`"`) {
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		status, err := strconv.Atoi(m[3])
		if err != nil {
			return nil, fmt.Errorf("parsing registry log line %q: %w", line, err)
		}
		reqs = append(reqs, Request{Method: m[1], URI: m[2], Status: status})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading registry log: %w", err)
	}
	return reqs, nil
}

// CountRequests returns how many requests with the given method (exact,
// e.g. "GET"; "" matches any) and a URI containing pathSubstring (e.g.
// "/blobs/sha256:"), or any of more substrings, the registry has logged,
// whatever their status.
//
// The registry writes an access log line just after the response, so a
// client may finish before its last request is logged. CountRequests
// therefore first sends a marker request and waits (up to 5s) until the
// marker is in the log; every request that completed before the call is
// then counted.
func (r *Registry) CountRequests(method, pathSubstring string, more ...string) (int, error) {
	if err := r.syncLog(); err != nil {
		return 0, err
	}
	reqs, err := r.Requests()
	if err != nil {
		return 0, err
	}
	subs := append([]string{pathSubstring}, more...)
	n := 0
	for _, q := range reqs {
		if method != "" && q.Method != method {
			continue
		}
		if slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(q.URI, sub) }) {
			n++
		}
	}
	return n, nil
}

// syncLog sends a marker request and waits until the access log shows it.
func (r *Registry) syncLog() error {
	r.syncMu.Lock()
	r.syncSeq++
	marker := fmt.Sprintf("%s=%d", syncParam, r.syncSeq)
	r.syncMu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/v2/?"+marker, nil)
	if err != nil {
		return fmt.Errorf("building registry log marker request: %w", err)
	}
	req.Header.Set("User-Agent", internalUserAgent)
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("sending registry log marker request: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	want := []byte("?" + marker + " ")
	ticker := time.NewTicker(pollInterval / 5)
	defer ticker.Stop()
	for {
		b, err := os.ReadFile(r.logPath)
		if err != nil {
			return fmt.Errorf("reading registry log: %w", err)
		}
		if bytes.Contains(b, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for registry log marker %q: %w", marker, ctx.Err())
		case <-ticker.C:
		}
	}
}
