package registry

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNetPolicy(t *testing.T) {
	p := netPolicy{
		insecure:     []string{"reg.lan", "10.0.0.2:5000", "[fd00::1]:5000"},
		plainMirrors: map[string]bool{"10.0.0.1:5000": true},
	}
	tests := []struct {
		hostport      string
		plain, noTLSV bool
	}{
		{"127.0.0.1:5000", true, false},
		{"127.1.2.3", true, false},
		{"localhost:80", true, false},
		{"[::1]:5000", true, false},
		{"::1", true, false},
		{"10.0.0.1:5000", true, false},  // http:// mirror
		{"10.0.0.1:5001", false, false}, // other port of it
		{"reg.lan", true, true},
		{"reg.lan:8443", true, true},
		{"REG.LAN:5000", true, true},
		{"10.0.0.2:5000", true, true},
		{"10.0.0.2", false, false},
		{"[fd00::1]:5000", true, true},
		{"192.168.1.1:5000", false, false},
		{"docker.io", false, false},
		{"localhost.example.com", false, false},
	}
	for _, tt := range tests {
		if got := p.plainHTTPAllowed(tt.hostport); got != tt.plain {
			t.Errorf("plainHTTPAllowed(%q) = %v, want %v", tt.hostport, got, tt.plain)
		}
		if got := p.skipVerify(tt.hostport); got != tt.noTLSV {
			t.Errorf("skipVerify(%q) = %v, want %v", tt.hostport, got, tt.noTLSV)
		}
	}
	// A host:port entry matches the scheme's default port.
	p = netPolicy{insecure: []string{"reg.lan:443", "old.lan:80"}}
	if !p.skipVerify("reg.lan") || p.plainHTTPAllowed("reg.lan") || !p.plainHTTPAllowed("old.lan") {
		t.Error("default ports not applied")
	}
}

func TestPolicyTransportRefusesPlainHTTP(t *testing.T) {
	tr, err := newPolicyTransport(Options{}, netPolicy{}, 4, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// 192.0.2.0/24 is TEST-NET-1: nothing is dialled, the policy answers first.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://192.0.2.1:5000/v2/", nil)
	_, err = tr.RoundTrip(req)
	var pe *plainHTTPError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "registries.insecure") {
		t.Errorf("plain HTTP to 192.0.2.1: %v", err)
	}
	if tr.unverified != nil {
		t.Error("unverified transport without insecure registries")
	}
	if got := tr.verified.MaxIdleConnsPerHost; got < 8 {
		t.Errorf("MaxIdleConnsPerHost %d", got)
	}
	if tr.verified.Proxy == nil {
		t.Error("no proxy from environment")
	}
}

func TestParseMirror(t *testing.T) {
	tests := []struct {
		in      string
		want    mirrorEndpoint
		errText string
	}{
		{in: "https://mirror.gcr.io", want: mirrorEndpoint{label: "https://mirror.gcr.io", host: "mirror.gcr.io"}},
		{in: "https://mirror.gcr.io/", want: mirrorEndpoint{label: "https://mirror.gcr.io", host: "mirror.gcr.io"}},
		{in: "https://Mirror:8443/v2/", want: mirrorEndpoint{label: "https://Mirror:8443", host: "mirror:8443"}},
		{in: "http://10.0.0.1:5000", want: mirrorEndpoint{label: "http://10.0.0.1:5000", host: "10.0.0.1:5000", plain: true}},
		{in: "mirror.gcr.io", errText: "want an endpoint like"},
		{in: "ftp://mirror", errText: "want an endpoint like"},
		{in: "https://harbor/v2/proxy", errText: "path prefixes"},
		{in: "https://user:hunter2@mirror", errText: "credentials"},
		{in: "https://mirror/?token=hunter2", errText: "credentials, query"},
	}
	for _, tt := range tests {
		got, err := parseMirror(tt.in)
		if tt.errText != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("parseMirror(%q): %v, want %q", tt.in, err, tt.errText)
			} else if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("parseMirror(%q) leaks a secret: %v", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseMirror(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("parseMirror(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestEndpoints(t *testing.T) {
	s, err := newSession(Options{
		Mirrors: map[string][]string{
			"docker.io":       {"https://mirror1", "http://10.0.0.1:5000"},
			"index.docker.io": {"https://mirror3/"},
			"ghcr.io":         {"https://ghcr-mirror"},
		},
		Insecure: []string{"mirror1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	type ep struct{ Label, Ref string }
	tests := []struct {
		ref  string
		want []ep
	}{
		{"registry:latest", []ep{
			{"https://mirror1", "mirror1/library/registry:latest"},
			{"http://10.0.0.1:5000", "10.0.0.1:5000/library/registry:latest"},
			{"https://mirror3", "mirror3/library/registry:latest"},
			{"docker.io", "index.docker.io/library/registry:latest"},
		}},
		{"ghcr.io/o/app@sha256:" + hexA, []ep{
			{"https://ghcr-mirror", "ghcr-mirror/o/app@sha256:" + hexA},
			{"ghcr.io", "ghcr.io/o/app@sha256:" + hexA},
		}},
		{"quay.io/o/app:1", []ep{{"quay.io", "quay.io/o/app:1"}}},
	}
	for _, tt := range tests {
		ref, err := ParseReference(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		eps, err := s.endpoints(ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []ep
		for _, e := range eps {
			got = append(got, ep{e.label, e.ref.Name()})
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.ref, diff)
		}
		// Plain HTTP (go-containerregistry's "insecure") only where allowed.
		for _, e := range eps {
			insecure := e.ref.Context().Registry.Scheme() == "http"
			want := e.label == "http://10.0.0.1:5000" || e.label == "https://mirror1"
			if insecure != want {
				t.Errorf("%s: plain HTTP fallback %v, want %v", e.label, insecure, want)
			}
		}
	}
	if _, err := newSession(Options{Mirrors: map[string][]string{"docker.io": {"https://x/prefix"}}}); err == nil || !strings.Contains(err.Error(), "registries.mirrors for docker.io") {
		t.Errorf("bad mirror: %v", err)
	}
	if _, err := newSession(Options{Insecure: []string{"http://x"}}); err == nil {
		t.Error("insecure entry with scheme accepted")
	}
	if _, err := newSession(Options{Platform: v1Platform("linux", "")}); err == nil {
		t.Error("platform without architecture accepted")
	}
	if _, err := newSession(Options{Jobs: -1}); err == nil {
		t.Error("negative jobs accepted")
	}
}

// writeCA writes a self-signed CA certificate to a file and returns its path.
func writeCA(t *testing.T, dir string) (string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, cert
}

// poolHas reports whether pool verifies a certificate issued by ca itself.
func poolHas(t *testing.T, pool *x509.CertPool, ca *x509.Certificate) bool {
	t.Helper()
	_, err := ca.Verify(x509.VerifyOptions{Roots: pool})
	return err == nil
}

func TestRootCAs(t *testing.T) {
	dir := t.TempDir()
	caPath, ca := writeCA(t, dir)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	t.Setenv("SSL_CERT_FILE", "")
	pool, err := rootCAs("", log)
	if err != nil || poolHas(t, pool, ca) {
		t.Fatalf("without CA file: %v, has CA %v", err, poolHas(t, pool, ca))
	}
	pool, err = rootCAs(caPath, log)
	if err != nil || !poolHas(t, pool, ca) {
		t.Errorf("CAFile: %v, has CA %v", err, poolHas(t, pool, ca))
	}
	t.Setenv("SSL_CERT_FILE", caPath)
	pool, err = rootCAs("", log)
	if err != nil || !poolHas(t, pool, ca) {
		t.Errorf("SSL_CERT_FILE: %v, has CA %v", err, poolHas(t, pool, ca))
	}
	t.Setenv("SSL_CERT_FILE", filepath.Join(dir, "missing.pem"))
	if _, err := rootCAs("", log); err != nil || !strings.Contains(logs.String(), "ignoring SSL_CERT_FILE") {
		t.Errorf("missing SSL_CERT_FILE: %v; log %q", err, logs.String())
	}
	if _, err := rootCAs(filepath.Join(dir, "missing.pem"), log); err == nil || !strings.Contains(err.Error(), "registries.ca_file") {
		t.Errorf("missing CA file: %v", err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o644)
	if _, err := rootCAs(notPEM, log); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("CA file without PEM: %v", err)
	}
}
