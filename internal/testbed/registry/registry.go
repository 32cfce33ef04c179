// Package registry runs the real distribution registry (Debian package
// docker-registry, distribution 2.8) on 127.0.0.1 as a test fixture.
//
// Start writes a config.yml, storage, an optional htpasswd file and optional
// TLS material into one directory, starts `docker-registry serve config.yml`
// and waits until it answers GET /v2/. Everything the registry prints,
// including its access log, goes to LogPath; CountRequests and Requests read
// that log so tests can count what a client fetched.
//
// The package does not import testing; registry_testing.go adds StartT for
// tests.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

// DefaultBinary is the registry executable looked up on PATH when
// Options.Binary is empty.
const DefaultBinary = "docker-registry"

// DefaultStartTimeout is how long Start waits for the registry to answer when
// Options.StartTimeout is zero.
const DefaultStartTimeout = 15 * time.Second

// stopTimeout is how long Close waits after SIGTERM before it sends SIGKILL.
const stopTimeout = 10 * time.Second

// pollInterval is the pause between readiness probes and log polls.
const pollInterval = 50 * time.Millisecond

// bindAttempts is how often Start picks a new port when the registry fails to
// bind the one it was given.
const bindAttempts = 5

// Options configures Start. The zero value is a plain-HTTP registry without
// authentication in a fresh temporary directory.
type Options struct {
	// Dir holds config.yml, the storage, the log and any auth/TLS files.
	// It must exist. Default: a new temporary directory, removed by Close.
	// A caller-supplied Dir is left in place.
	Dir string
	// Binary is the registry executable. Default: DefaultBinary on PATH.
	Binary string
	// StartTimeout bounds the wait for the registry to answer.
	// Default: DefaultStartTimeout.
	StartTimeout time.Duration
	// Htpasswd maps user names to passwords. When non-empty the registry
	// requires HTTP basic authentication for every request; the file is
	// written with bcrypt hashes by the htpasswd tool (apache2-utils).
	// Default: no authentication.
	Htpasswd map[string]string
	// TLS serves HTTPS with a server certificate for 127.0.0.1, ::1 and
	// localhost, signed by a freshly generated CA (see CACertPath).
	// Default: plain HTTP.
	TLS bool
}

// Registry is a running registry process. Its methods are safe for
// concurrent use.
type Registry struct {
	dir        string
	ownDir     bool
	addr       string
	tls        bool
	caCertPath string
	logPath    string
	client     *http.Client

	proc *proc.Proc

	closeOnce sync.Once
	closeErr  error

	syncMu  sync.Mutex
	syncSeq int
}

// Start starts a registry as described by opts and returns once it answers
// GET /v2/ (any HTTP status counts: with Htpasswd it answers 401). ctx bounds
// the start only; stop the registry with Close. On error nothing is left
// running and a temporary directory made by Start is removed.
func Start(ctx context.Context, opts Options) (_ *Registry, retErr error) {
	bin := opts.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	binPath, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("finding registry binary %q: %w", bin, err)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}

	r := &Registry{dir: opts.Dir, tls: opts.TLS}
	if r.dir == "" {
		d, err := os.MkdirTemp("", "mbctl-registry-")
		if err != nil {
			return nil, fmt.Errorf("creating registry directory: %w", err)
		}
		r.dir, r.ownDir = d, true
		defer func() {
			if retErr != nil {
				_ = os.RemoveAll(d)
			}
		}()
	} else if fi, err := os.Stat(r.dir); err != nil {
		return nil, fmt.Errorf("registry directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("registry directory %s: not a directory", r.dir)
	}
	r.logPath = filepath.Join(r.dir, "registry.log")

	transport := http.DefaultTransport.(*http.Transport).Clone()
	var cert *serverCert
	if opts.TLS {
		cert, err = writeTLSFiles(filepath.Join(r.dir, "tls"))
		if err != nil {
			return nil, err
		}
		r.caCertPath = cert.caPath
		pool := x509.NewCertPool()
		pool.AddCert(cert.ca)
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	r.client = &http.Client{Transport: transport, Timeout: 5 * time.Second}

	htpasswdPath := ""
	if len(opts.Htpasswd) > 0 {
		htpasswdPath = filepath.Join(r.dir, "htpasswd")
		if err := writeHtpasswd(ctx, htpasswdPath, opts.Htpasswd); err != nil {
			return nil, err
		}
	}

	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generating registry http secret: %w", err)
	}

	deadline := time.Now().Add(timeout)
	startCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var errs []error
	for attempt := 0; attempt < bindAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cfg := configYAML{
			storageDir: filepath.Join(r.dir, "data"),
			addr:       r.addr,
			secret:     hex.EncodeToString(secret),
			htpasswd:   htpasswdPath,
		}
		if cert != nil {
			cfg.certPath, cfg.keyPath = cert.certPath, cert.keyPath
		}
		cfgPath := filepath.Join(r.dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
			return nil, fmt.Errorf("writing registry config: %w", err)
		}
		err = r.run(startCtx, binPath, cfgPath)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, fmt.Errorf("starting registry: %w", errors.Join(errs...))
}

// errAddrInUse marks a start that failed because the port was taken.
var errAddrInUse = errors.New("address already in use")

// run starts the registry process once and waits until it answers. On error
// the process has been stopped.
func (r *Registry) run(ctx context.Context, binPath, cfgPath string) error {
	var startOffset int64
	if fi, err := os.Stat(r.logPath); err == nil {
		startOffset = fi.Size()
	}
	cmd := exec.Command(binPath, "serve", cfgPath)
	cmd.Dir = r.dir
	cmd.Env = registryEnv()
	p, err := proc.Start("registry", cmd, r.logPath)
	if err != nil {
		return err
	}
	r.proc = p

	if err := r.waitReady(ctx); err != nil {
		stopErr := r.stop()
		tail := r.logTail(startOffset)
		if strings.Contains(tail, "address already in use") {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		if tail != "" {
			err = fmt.Errorf("%w; registry log:\n%s", err, tail)
		}
		return errors.Join(err, stopErr)
	}
	return nil
}

// waitReady polls GET /v2/ until any HTTP response arrives, the process
// exits or ctx ends.
func (r *Registry) waitReady(ctx context.Context) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("building readiness probe: %w", err)
		}
		req.Header.Set("User-Agent", internalUserAgent)
		resp, err := r.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		lastErr = err
		select {
		case <-r.proc.Done():
			return fmt.Errorf("registry exited before answering: %w", r.proc.Exited())
		case <-ctx.Done():
			return fmt.Errorf("waiting for registry on %s: %w (last probe: %v)", r.addr, ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}

// logTail returns the log written since offset, at most 4 KiB of its end.
func (r *Registry) logTail(offset int64) string {
	b, err := os.ReadFile(r.logPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return strings.TrimSpace(string(b))
}

// registryEnv is the current environment without REGISTRY_* variables, which
// distribution would otherwise read as configuration overrides.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// may take it before the registry binds it; Start retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("releasing port %d: %w", port, err)
	}
	return port, nil
}

// Addr returns the registry's "127.0.0.1:PORT", the registry part of image
// references.
func (r *Registry) Addr() string { return r.addr }

// URL returns the registry's base URL, "http://127.0.0.1:PORT" or
// "https://127.0.0.1:PORT" with Options.TLS.
func (r *Registry) URL() string {
	if r.tls {
		return "https://" + r.addr
	}
	return "http://" + r.addr
}

// Dir returns the directory holding config.yml, the storage and the log.
func (r *Registry) Dir() string { return r.dir }

// StorageDir returns the filesystem storage root. Blobs live under
// docker/registry/v2/blobs/sha256/XX/DIGEST/data, which tests may corrupt.
func (r *Registry) StorageDir() string { return filepath.Join(r.dir, "data") }

// LogPath returns the file that receives the registry's stdout and stderr:
// logrus lines ("response completed" with http.request.uri) and the Apache
// combined access log, one line per request.
func (r *Registry) LogPath() string { return r.logPath }

// CACertPath returns the PEM file of the CA that signed the server
// certificate, or "" without Options.TLS.
func (r *Registry) CACertPath() string { return r.caCertPath }

// HTTPClient returns a client that trusts the registry's CA (with
// Options.TLS). It sends no credentials.
func (r *Registry) HTTPClient() *http.Client { return r.client }

// Close stops the registry: SIGTERM, then SIGKILL if it has not exited
// within 10s. It removes the directory Start created (not a caller-supplied
// Options.Dir). Close is idempotent; later calls return the first result.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		if err := r.stop(); err != nil {
			errs = append(errs, err)
		}
		if r.ownDir {
			if err := os.RemoveAll(r.dir); err != nil {
				errs = append(errs, fmt.Errorf("removing registry directory: %w", err))
			}
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// stop terminates the process started by run and waits for it.
func (r *Registry) stop() error {
	if r.proc == nil {
		return nil
	}
	return r.proc.Stop(stopTimeout)
}
