// Package waitfor implements the MAN8S_WAIT_FOR dependencies of man8s-init: a list of
// targets (TCP ports, HTTP URLs, hosts answering ping, files) that must all be met before
// the application starts.
package waitfor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target kinds.
const (
	KindTCP  = "tcp"
	KindHTTP = "http" // http:// and https:// targets
	KindPing = "ping"
	KindFile = "file"
)

// Defaults of Options.
const (
	DefaultTimeout  = 300 * time.Second
	DefaultInterval = 250 * time.Millisecond
	DefaultProgress = 5 * time.Second
)

// attemptTimeout bounds one check of one target.
const attemptTimeout = 2 * time.Second

const acceptedForms = "accepted forms: tcp://host:port, http://host[:port][/path], https://host[:port][/path], ping://host, file:///path"

// Target is one parsed MAN8S_WAIT_FOR item.
type Target struct {
	// Kind is one of KindTCP, KindHTTP, KindPing and KindFile.
	Kind string
	// Raw is the item as written in MAN8S_WAIT_FOR.
	Raw string
	// Addr is what is checked: host:port (tcp), the full URL (http), the host (ping) or the
	// absolute path (file).
	Addr string
}

// String returns the target for logs and errors, with any URL password and query redacted.
func (t Target) String() string {
	if t.Kind != KindHTTP {
		return t.Raw
	}
	u, err := url.Parse(t.Addr)
	if err != nil {
		return t.Raw
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	return u.Redacted()
}

// Parse parses a MAN8S_WAIT_FOR value: targets separated by spaces and/or commas. An empty
// spec yields no targets.
func Parse(spec string) ([]Target, error) {
	items := strings.FieldsFunc(spec, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	var targets []Target
	var errs []error
	for _, item := range items {
		t, err := parseItem(item)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		targets = append(targets, t)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("parsing MAN8S_WAIT_FOR: %w (%s)", errors.Join(errs...), acceptedForms)
	}
	return targets, nil
}

func parseItem(item string) (Target, error) {
	bad := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("item %q: %s", redactItem(item), fmt.Sprintf(format, args...))
	}
	scheme, rest, ok := strings.Cut(item, "://")
	if !ok {
		return bad("missing scheme")
	}
	scheme = strings.ToLower(scheme)
	var u *url.URL
	if scheme != "tcp" { // url.Parse rejects a non-numeric port, which tcp reports better
		var err error
		if u, err = url.Parse(item); err != nil {
			return bad("not a valid URL")
		}
	}
	switch scheme {
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" || port == "" {
			return bad("want tcp://host:port")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("port %q is not a number between 1 and 65535", port)
		}
		return Target{Kind: KindTCP, Raw: item, Addr: net.JoinHostPort(host, port)}, nil
	case "http", "https":
		if u.Host == "" || u.Hostname() == "" {
			return bad("missing host")
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return bad("port %q is not a number between 1 and 65535", p)
			}
		}
		return Target{Kind: KindHTTP, Raw: item, Addr: u.String()}, nil
	case "ping":
		if u.User != nil || u.Port() != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Hostname() == "" {
			return bad("want ping://host")
		}
		return Target{Kind: KindPing, Raw: item, Addr: u.Hostname()}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return bad("want file:///absolute/path (no host)")
		}
		if !strings.HasPrefix(u.Path, "/") || u.Path == "/" {
			return bad("want file:///absolute/path")
		}
		return Target{Kind: KindFile, Raw: item, Addr: u.Path}, nil
	default:
		return bad("unknown scheme %q", scheme)
	}
}

// redactItem hides a password in an unparseable or invalid item.
func redactItem(item string) string {
	if u, err := url.Parse(item); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return item
}

// Options configure Wait.
type Options struct {
	// Timeout is how long to wait for all targets (MAN8S_WAIT_TIMEOUT); default 300s.
	Timeout time.Duration
	// Interval is the delay between two checks of one target; default 250ms. It grows by
	// half after each failure, up to four times its initial value.
	Interval time.Duration
	// Progress is how often the targets still waited for are logged; default 5s.
	Progress time.Duration
	// Log receives progress lines; default: discard.
	Log *slog.Logger

	// ping replaces the ping check in tests; nil means defaultPing.
	ping func(ctx context.Context, host string) error
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Progress <= 0 {
		o.Progress = DefaultProgress
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ping == nil {
		o.ping = func(ctx context.Context, host string) error { return ping(ctx, host, icmpEcho, tcpAnswer) }
	}
	return o
}

// UnmetError is returned by Wait when the timeout expires before all targets are met.
type UnmetError struct {
	Timeout time.Duration
	// Unmet maps each unmet target (as Target.String) to the last error of its check.
	Unmet map[string]error
}

func (e *UnmetError) Error() string {
	names := make([]string, 0, len(e.Unmet))
	for n := range e.Unmet {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		last := "not checked yet"
		if err := e.Unmet[n]; err != nil {
			last = err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s (last error: %s)", n, last))
	}
	return fmt.Sprintf("waiting for dependencies: %d not met after %s: %s", len(names), e.Timeout, strings.Join(parts, "; "))
}

// state is the shared progress of one Wait.
type state struct {
	mu      sync.Mutex
	lastErr map[int]error
	met     map[int]bool
}

// Wait checks all targets concurrently until every one is met. It returns nil when they
// are, an *UnmetError when opts.Timeout expires first, and ctx's error when ctx ends.
func Wait(ctx context.Context, targets []Target, opts Options) error {
	if len(targets) == 0 {
		return nil
	}
	opts = opts.withDefaults()
	tctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	st := &state{lastErr: map[int]error{}, met: map[int]bool{}}
	done := make(chan int, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			if waitOne(tctx, t, opts, func(err error) {
				st.mu.Lock()
				st.lastErr[i] = err
				st.mu.Unlock()
			}) {
				st.mu.Lock()
				st.met[i] = true
				st.mu.Unlock()
				done <- i
			}
		})
	}
	defer wg.Wait()

	start := time.Now()
	ticker := time.NewTicker(opts.Progress)
	defer ticker.Stop()
	for remaining := len(targets); remaining > 0; {
		select {
		case i := <-done:
			remaining--
			opts.Log.Info("dependency met", "target", targets[i].String(), "after", time.Since(start).Round(time.Millisecond))
		case <-ticker.C:
			pending := st.pending(targets)
			opts.Log.Info("waiting for dependencies", "pending", strings.Join(pending, " "), "elapsed", time.Since(start).Round(time.Second))
		case <-tctx.Done():
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("waiting for dependencies: %w", err)
			}
			cancel()
			wg.Wait() // the last errors are final once every checker has returned
			st.mu.Lock()
			defer st.mu.Unlock()
			ue := &UnmetError{Timeout: opts.Timeout, Unmet: map[string]error{}}
			for i, t := range targets {
				if !st.met[i] {
					ue.Unmet[t.String()] = st.lastErr[i]
				}
			}
			if len(ue.Unmet) == 0 {
				return nil
			}
			return ue
		}
	}
	return nil
}

func (s *state) pending(targets []Target) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for i, t := range targets {
		if !s.met[i] {
			out = append(out, t.String())
		}
	}
	return out
}

// waitOne checks t until it is met (true) or ctx ends (false), reporting each failure.
func waitOne(ctx context.Context, t Target, opts Options, report func(error)) bool {
	interval := opts.Interval
	for {
		err := check(ctx, t, opts)
		if err == nil {
			return true
		}
		if ctx.Err() == nil {
			report(err) // an error caused by the end of the wait says nothing about the target
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
		interval = min(interval*3/2, 4*opts.Interval)
	}
}

func check(ctx context.Context, t Target, opts Options) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return checkTarget(ctx, t, opts)
}

// Check checks t once, within ctx (the caller bounds it), and returns nil
// when it is met: man8s-init's readiness and health checks use the targets
// of MAN8S_WAIT_FOR.
func Check(ctx context.Context, t Target) error {
	return checkTarget(ctx, t, Options{}.withDefaults())
}

func checkTarget(ctx context.Context, t Target, opts Options) error {
	switch t.Kind {
	case KindTCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", t.Addr)
		if err != nil {
			return err
		}
		return conn.Close()
	case KindHTTP:
		return checkHTTP(ctx, t.Addr)
	case KindPing:
		return opts.ping(ctx, t.Addr)
	case KindFile:
		_, err := os.Stat(t.Addr)
		return err
	default:
		return fmt.Errorf("unknown target kind %q", t.Kind)
	}
}
