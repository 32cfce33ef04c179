package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// configYAML is the part of a distribution 2.8 configuration that Start
// varies.
type configYAML struct {
	storageDir string
	addr       string
	secret     string
	certPath   string // with keyPath: serve TLS
	keyPath    string
	htpasswd   string // htpasswd file: require basic auth
}

// String renders the configuration. Notes on distribution 2.8:
//   - log.accesslog.disabled=false keeps the Apache combined access log on
//     stdout (it is on by default; stated so nobody turns it off by accident);
//   - log.level=info is needed for the "response completed" lines;
//   - upload purging is off so no background job touches the storage;
//   - delete is enabled so tests can delete manifests and blobs.
func (c configYAML) String() string {
	q := strconv.Quote // a Go quoted string is a valid YAML double-quoted scalar here
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
`, q(c.storageDir), q(c.addr), q(c.secret))
	if c.certPath != "" {
		fmt.Fprintf(&b, `  tls:
    certificate: %s
    key: %s
`, q(c.certPath), q(c.keyPath))
	}
	if c.htpasswd != "" {
		fmt.Fprintf(&b, `auth:
  htpasswd:
    realm: "mbctl-testbed"
    path: %s
`, q(c.htpasswd))
	}
	return b.String()
}

// writeHtpasswd writes users with bcrypt hashes made by the htpasswd tool.
// Passwords go to its stdin, never onto a command line.
func writeHtpasswd(ctx context.Context, path string, users map[string]string) error {
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		return fmt.Errorf("finding htpasswd (apache2-utils): %w", err)
	}
	names := make([]string, 0, len(users))
	for u := range users {
		if u == "" || strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("htpasswd user %q: empty or contains ':' or newline", u)
		}
		names = append(names, u)
	}
	sort.Strings(names)
	var out bytes.Buffer
	for _, u := range names {
		cmd := exec.CommandContext(ctx, bin, "-n", "-i", "-B", "-C", "4", u)
		cmd.Stdin = strings.NewReader(users[u])
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("hashing password of %q with htpasswd: %w: %s", u, err, strings.TrimSpace(stderr.String()))
		}
		line := strings.TrimSpace(stdout.String())
		if !strings.HasPrefix(line, u+":$2") {
			return fmt.Errorf("hashing password of %q with htpasswd: unexpected output", u)
		}
		out.WriteString(line + "\n")
	}
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		return fmt.Errorf("writing htpasswd file: %w", err)
	}
	return nil
}

// serverCert is the TLS material written by writeTLSFiles.
type serverCert struct {
	ca       *x509.Certificate
	caPath   string
	certPath string
	keyPath  string
}

// writeTLSFiles generates a CA and a server certificate for 127.0.0.1, ::1
// and localhost, valid for a day, and writes ca.pem, server.pem and
// server-key.pem into dir.
func writeTLSFiles(dir string) (*serverCert, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating TLS directory: %w", err)
	}
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mbctl testbed CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parsing CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding server key: %w", err)
	}

	sc := &serverCert{
		ca:       ca,
		caPath:   filepath.Join(dir, "ca.pem"),
		certPath: filepath.Join(dir, "server.pem"),
		keyPath:  filepath.Join(dir, "server-key.pem"),
	}
	files := []struct {
		path  string
		block *pem.Block
		mode  os.FileMode
	}{
		{sc.caPath, &pem.Block{Type: "CERTIFICATE", Bytes: caDER}, 0o644},
		{sc.certPath, &pem.Block{Type: "CERTIFICATE", Bytes: der}, 0o644},
		{sc.keyPath, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(f.block), f.mode); err != nil {
			return nil, fmt.Errorf("writing %s: %w", filepath.Base(f.path), err)
		}
	}
	return sc, nil
}
