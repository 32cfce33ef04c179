package yggadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// socketDir returns a short temporary directory: unix socket paths are
// limited to 108 bytes, which t.TempDir's long names can exceed.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ygg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeNode is an admin socket that answers every connection with handle.
type fakeNode struct {
	ln       net.Listener
	mu       sync.Mutex
	requests []string
	wg       sync.WaitGroup
}

// serve starts a fake node on network ("unix" or "tcp"). handle gets the
// connection after the request has been read (nil request when reading it
// failed) and writes the answer; the connection is closed when it returns.
func serve(t *testing.T, network string, handle func(conn net.Conn, req json.RawMessage)) (*fakeNode, string) {
	t.Helper()
	var (
		ln       net.Listener
		err      error
		endpoint string
	)
	switch network {
	case "unix":
		path := filepath.Join(socketDir(t), "ygg.sock")
		ln, err = net.Listen("unix", path)
		endpoint = "unix://" + path
	case "tcp":
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			endpoint = "tcp://" + ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	n := &fakeNode{ln: ln}
	n.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			n.wg.Go(func() {
				defer conn.Close()
				var req json.RawMessage
				if err := json.NewDecoder(conn).Decode(&req); err != nil {
					req = nil
				}
				n.mu.Lock()
				n.requests = append(n.requests, string(req))
				n.mu.Unlock()
				// Like yggdrasil without keepalive: answer, then hang up.
				handle(conn, req)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		n.wg.Wait()
	})
	return n, endpoint
}

// reply returns a handler that writes b.
func reply(b []byte) func(net.Conn, json.RawMessage) {
	return func(conn net.Conn, _ json.RawMessage) { _, _ = conn.Write(b) }
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordedSelf is the node all fixtures describe.
func recordedSelf(buildName, buildVersion string) Self {
	return Self{
		Address:      netip.MustParseAddr("200:813c:ad4a:3c08:bc1b:4c4c:54e4:ef32"),
		Subnet:       netip.MustParsePrefix("300:813c:ad4a:3c08::/64"),
		BuildName:    buildName,
		BuildVersion: buildVersion,
		PublicKey:    "bf61a95ae1fba1f259d9d58d8866b70998e92bd559ebe5d114c6ea95a262bf29",
	}
}

func selfComparer() cmp.Option {
	return cmp.Comparer(func(a, b Self) bool { return a == b })
}

func TestGetSelfReplays(t *testing.T) {
	tests := []struct {
		fixture string
		network string
		want    Self
	}{
		{fixture: "getself-0.4.7.json", network: "unix", want: recordedSelf("unknown", "unknown")},
		{fixture: "getself-0.5.12.json", network: "unix", want: recordedSelf("yggdrasil", "0.5.12")},
		{fixture: "getself-legacy.json", network: "unix", want: recordedSelf("yggdrasil", "0.4.0")},
		{fixture: "getself-0.4.7.json", network: "tcp", want: recordedSelf("unknown", "unknown")},
		{fixture: "getself-0.5.12.json", network: "tcp", want: recordedSelf("yggdrasil", "0.5.12")},
	}
	for _, tt := range tests {
		t.Run(tt.network+"/"+tt.fixture, func(t *testing.T) {
			node, endpoint := serve(t, tt.network, reply(readFixture(t, tt.fixture)))
			c, err := NewClient(endpoint)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.GetSelf(t.Context())
			if err != nil {
				t.Fatalf("GetSelf: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, selfComparer()); diff != "" {
				t.Fatalf("GetSelf mismatch (-want +got):\n%s", diff)
			}
			node.mu.Lock()
			defer node.mu.Unlock()
			if len(node.requests) != 1 {
				t.Fatalf("node got %d requests, want 1", len(node.requests))
			}
			var req map[string]any
			if err := json.Unmarshal([]byte(node.requests[0]), &req); err != nil {
				t.Fatalf("request %q: %v", node.requests[0], err)
			}
			wantReq := map[string]any{"request": "getself", "arguments": map[string]any{}, "keepalive": false}
			if diff := cmp.Diff(wantReq, req); diff != "" {
				t.Fatalf("request mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetSelfErrorReplies(t *testing.T) {
	longGarbage := strings.Repeat("x", 5000)
	tests := []struct {
		name    string
		answer  []byte
		wantErr string
	}{
		{name: "0.4.7 error", answer: readFixture(t, "error-0.4.7.json"), wantErr: "answered getself with an error: Unknown action 'nosuch', try 'list' for help"},
		{name: "0.5.12 error", answer: readFixture(t, "error-0.5.12.json"), wantErr: "answered getself with an error: Unknown action 'nosuch', try 'list' for help"},
		{name: "legacy error", answer: readFixture(t, "error-legacy.json"), wantErr: "answered getself with an error: Unknown action 'nosuch', try 'list' for help"},
		{name: "error without reason", answer: []byte(`{"status":"error"}`), wantErr: "answered getself with an error: no reason given"},
		{name: "multi-line error", answer: []byte(`{"status":"error","error":"a\nb"}`), wantErr: "answered getself with an error: a b"},
		{name: "not JSON", answer: []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), wantErr: `sent a malformed answer (invalid character 'H' looking for beginning of value): "HTTP/1.1 400 Bad Request\r\n\r\n"`},
		{name: "truncated JSON", answer: []byte(`{"status":"succ`), wantErr: `sent a malformed answer (unexpected EOF): "{\"status\":\"succ"`},
		{name: "long garbage is cut", answer: []byte(`{"status":` + longGarbage), wantErr: `"{\"status\":` + strings.Repeat("x", excerptLen-len(`{"status":`)) + `"...`},
		{name: "unknown status", answer: []byte(`{"status":"maybe"}`), wantErr: `status "maybe" is neither "success" nor "error"`},
		{name: "no response", answer: []byte(`{"status":"success","response":null}`), wantErr: "getself: no address or subnet"},
		{name: "response not an object", answer: []byte(`{"status":"success","response":[1]}`), wantErr: "getself: json: cannot unmarshal array"},
		{name: "bad address", answer: []byte(`{"status":"success","response":{"address":"nonsense","subnet":"300::/64"}}`), wantErr: `getself: address "nonsense" is not an address in 200::/7`},
		{name: "address outside 200::/7", answer: []byte(`{"status":"success","response":{"address":"fd00::1","subnet":"300::/64"}}`), wantErr: `address "fd00::1" is not an address in 200::/7`},
		{name: "IPv4 address", answer: []byte(`{"status":"success","response":{"address":"10.0.0.1","subnet":"300::/64"}}`), wantErr: `address "10.0.0.1" is not`},
		{name: "bad subnet", answer: []byte(`{"status":"success","response":{"address":"200::1","subnet":"300::"}}`), wantErr: `subnet "300::" is not a prefix in 200::/7`},
		{name: "subnet outside 200::/7", answer: []byte(`{"status":"success","response":{"address":"200::1","subnet":"2001:db8::/64"}}`), wantErr: `subnet "2001:db8::/64" is not a prefix in 200::/7`},
		{name: "no answer at all", answer: nil, wantErr: "closed the connection without answering: is it a yggdrasil admin socket?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, endpoint := serve(t, "unix", reply(tt.answer))
			c, err := NewClient(endpoint)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetSelf(t.Context())
			if err == nil {
				t.Fatal("GetSelf succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("GetSelf error = %q, want it to contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "yggdrasil admin socket /") {
				t.Fatalf("GetSelf error = %q, want it to name the socket", err)
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) > 400 {
				t.Fatalf("GetSelf error is not one short line: %q", err)
			}
			if errors.Is(err, ErrUnreachable) {
				t.Fatalf("GetSelf error %q matches ErrUnreachable; the node is there", err)
			}
		})
	}
}

func TestGetSelfUnreachable(t *testing.T) {
	dir := socketDir(t)

	// A socket file nobody listens on: connecting is refused.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	// A TCP port nobody listens on.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := tl.Addr().String()
	tl.Close()

	tests := []struct {
		name     string
		endpoint string
		wantErr  string
		wantIs   error
	}{
		{
			name:     "missing socket",
			endpoint: "unix://" + dir + "/x.sock",
			wantErr:  "yggdrasil admin socket " + dir + "/x.sock does not exist: is yggdrasil running? or set network.ygg_prefix in the config",
			wantIs:   fs.ErrNotExist,
		},
		{
			name:     "missing directory",
			endpoint: "unix://" + dir + "/nodir/x.sock",
			wantErr:  "yggdrasil admin socket " + dir + "/nodir/x.sock does not exist: is yggdrasil running? or set network.ygg_prefix in the config",
			wantIs:   fs.ErrNotExist,
		},
		{
			name:     "stale socket",
			endpoint: "unix://" + stale,
			wantErr:  "yggdrasil admin socket " + stale + " refused the connection: is yggdrasil running? or set network.ygg_prefix in the config",
			wantIs:   syscall.ECONNREFUSED,
		},
		{
			name:     "closed TCP port",
			endpoint: "tcp://" + closedPort,
			wantErr:  "yggdrasil admin endpoint tcp://" + closedPort + " refused the connection: is yggdrasil running? or set network.ygg_prefix in the config",
			wantIs:   syscall.ECONNREFUSED,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.endpoint)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetSelf(t.Context())
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("GetSelf error = %v, want %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("GetSelf error %q does not match ErrUnreachable", err)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("GetSelf error %q does not match %v", err, tt.wantIs)
			}
		})
	}
}

// permissionHelperEnv tells the test binary, re-run as nobody by
// TestGetSelfPermissionDenied, to query the socket it names, print the
// error and exit instead of running the tests.
const permissionHelperEnv = "MBCTL_YGG_TEST_PERMISSION_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(permissionHelperEnv); path != "" {
		os.Exit(permissionHelper(path))
	}
	os.Exit(m.Run())
}

func permissionHelper(path string) int {
	c, err := NewClient("unix://" + path)
	if err != nil {
		fmt.Println(err)
		return 2
	}
	_, err = c.GetSelf(context.Background())
	if !errors.Is(err, fs.ErrPermission) {
		fmt.Printf("error %v does not match fs.ErrPermission\n", err)
		return 1
	}
	fmt.Println("ERROR=" + err.Error())
	return 0
}

func TestGetSelfPermissionDenied(t *testing.T) {
	dir := socketDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ygg.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Yggdrasil makes its socket 0660: only its owner and group may connect.
	if err := os.Chmod(path, 0o660); err != nil {
		t.Fatal(err)
	}
	prefix := "permission denied on yggdrasil admin socket " + path + ": run mbctl as root"

	if os.Geteuid() != 0 {
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		c, err := NewClient("unix://" + path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetSelf(t.Context())
		if err == nil || !strings.HasPrefix(err.Error(), prefix) || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("GetSelf error = %v, want %q...", err, prefix)
		}
		return
	}

	// Root connects to any socket, so run this test binary again as nobody.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ygg.test")
	if err := copyFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	daemon, err := user.LookupGroupId("1")
	if err != nil {
		t.Fatalf("looking up gid 1: %v", err)
	}
	tests := []struct {
		gid  int
		want string
	}{
		{gid: 0, want: prefix + " (the socket belongs to group root)"},
		{gid: 1, want: prefix + ` or add your user to the socket's group "` + daemon.Name + `" (usermod -aG ` + daemon.Name + ` USER, then log in again)`},
	}
	for _, tt := range tests {
		t.Run("gid "+strconv.Itoa(tt.gid), func(t *testing.T) {
			if err := os.Chown(path, 0, tt.gid); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), bin)
			cmd.Env = append(os.Environ(), permissionHelperEnv+"="+path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("running the test binary as nobody: %v\n%s", err, out)
			}
			var got string
			for line := range strings.Lines(string(out)) {
				if rest, ok := strings.CutPrefix(line, "ERROR="); ok {
					got = strings.TrimSpace(rest)
				}
			}
			if got != tt.want {
				t.Fatalf("as nobody, GetSelf error = %q, want %q\n%s", got, tt.want, out)
			}
		})
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func TestDialErrorsFromTheSystem(t *testing.T) {
	// Errors a root test cannot provoke for real, as net.Dial returns them.
	tests := []struct {
		name     string
		endpoint string // default unix:///nonexistent/ygg.sock, which does not exist here
		errno    syscall.Errno
		wantErr  string
		wantIs   []error
	}{
		{name: "EACCES", errno: syscall.EACCES, wantErr: "permission denied on yggdrasil admin socket /nonexistent/ygg.sock: run mbctl as root or add your user to the socket's group", wantIs: []error{fs.ErrPermission}},
		{name: "EACCES over TCP", endpoint: "tcp://localhost:9001", errno: syscall.EACCES, wantErr: "permission denied on yggdrasil admin endpoint tcp://localhost:9001: run mbctl as root", wantIs: []error{fs.ErrPermission}},
		{name: "EPERM", errno: syscall.EPERM, wantErr: "permission denied on yggdrasil admin socket /nonexistent/ygg.sock", wantIs: []error{fs.ErrPermission}},
		{name: "ENOENT", errno: syscall.ENOENT, wantErr: "does not exist: is yggdrasil running?", wantIs: []error{ErrUnreachable, fs.ErrNotExist}},
		{name: "other", errno: syscall.EPROTOTYPE, wantErr: "connecting to yggdrasil admin socket /nonexistent/ygg.sock: dial unix /nonexistent/ygg.sock: connect: protocol wrong type for socket", wantIs: []error{syscall.EPROTOTYPE}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := tt.endpoint
			if endpoint == "" {
				endpoint = "unix:///nonexistent/ygg.sock"
			}
			c, err := NewClient(endpoint)
			if err != nil {
				t.Fatal(err)
			}
			c.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: network, Addr: &net.UnixAddr{Name: address, Net: network}, Err: os.NewSyscallError("connect", tt.errno)}
			}
			_, err = c.GetSelf(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("GetSelf error = %v, want it to contain %q", err, tt.wantErr)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Fatalf("GetSelf error %q does not match %v", err, target)
				}
			}
		})
	}
}

func TestGetSelfTimeout(t *testing.T) {
	// Accepts, reads the request, never answers.
	hang := func(net.Conn, json.RawMessage) { <-t.Context().Done() }
	_, endpoint := serve(t, "unix", hang)
	c, err := NewClient(endpoint, WithTimeout(150*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.GetSelf(t.Context())
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("GetSelf succeeded against a node that never answers")
	}
	want := " did not answer within 150ms while reading the answer: yggdrasil may be hung, or the endpoint is not a yggdrasil admin socket"
	if !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("GetSelf error = %q, want it to end with %q", err, want)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetSelf error %q does not match the deadline errors", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Fatalf("GetSelf error %q matches ErrUnreachable; a hung node is not a missing one", err)
	}
	if elapsed > time.Second {
		t.Fatalf("GetSelf took %v with a 150ms timeout", elapsed)
	}
}

func TestGetSelfCallerDeadlineAndCancel(t *testing.T) {
	hang := func(net.Conn, json.RawMessage) { <-t.Context().Done() }
	_, endpoint := serve(t, "unix", hang)
	c, err := NewClient(endpoint) // default 2s
	if err != nil {
		t.Fatal(err)
	}

	t.Run("shorter caller deadline wins", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.GetSelf(ctx)
		if err == nil || !strings.Contains(err.Error(), "did not answer within") || strings.Contains(err.Error(), "within 2s") {
			t.Fatalf("GetSelf error = %v, want a timeout naming the caller's deadline", err)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("GetSelf ignored the caller's deadline")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.GetSelf(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("GetSelf error = %v, want context.Canceled", err)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("GetSelf did not stop when cancelled")
		}
	})
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		endpoint    string
		opts        []Option
		wantNetwork string
		wantAddress string
		wantTimeout time.Duration
		wantErr     string
	}{
		{endpoint: "unix:///var/run/yggdrasil.sock", wantNetwork: "unix", wantAddress: "/var/run/yggdrasil.sock", wantTimeout: 2 * time.Second},
		{endpoint: "UNIX:///run/ygg.sock", wantNetwork: "unix", wantAddress: "/run/ygg.sock", wantTimeout: 2 * time.Second},
		{endpoint: "unix://@yggdrasil", wantNetwork: "unix", wantAddress: "@yggdrasil", wantTimeout: 2 * time.Second},
		{endpoint: "tcp://localhost:9001", wantNetwork: "tcp", wantAddress: "localhost:9001", wantTimeout: 2 * time.Second},
		{endpoint: "tcp://127.0.0.1:9001", opts: []Option{WithTimeout(5 * time.Second)}, wantNetwork: "tcp", wantAddress: "127.0.0.1:9001", wantTimeout: 5 * time.Second},
		{endpoint: "tcp://[::1]:9001", wantNetwork: "tcp", wantAddress: "[::1]:9001", wantTimeout: 2 * time.Second},

		{endpoint: "", wantErr: `yggdrasil admin endpoint "" has no scheme: use unix:///path/to/yggdrasil.sock or tcp://host:port`},
		{endpoint: "/var/run/yggdrasil.sock", wantErr: "has no scheme"},
		{endpoint: "unix://var/run/yggdrasil.sock", wantErr: "the socket path must be absolute (unix:///run/yggdrasil.sock, three slashes)"},
		{endpoint: "unix://", wantErr: "the socket path must be absolute"},
		{endpoint: "unix:///", wantErr: "the socket path is missing or invalid"},
		{endpoint: "http://localhost:9001", wantErr: `scheme "http" is not supported: use unix:///path/to/yggdrasil.sock or tcp://host:port`},
		{endpoint: "tls://localhost:9001", wantErr: `scheme "tls" is not supported`},
		{endpoint: "tcp://localhost", wantErr: "missing port in address"},
		{endpoint: "tcp://:9001", wantErr: "has no host"},
		{endpoint: "tcp://localhost:http", wantErr: `port "http" is not a number from 1 to 65535`},
		{endpoint: "tcp://localhost:0", wantErr: `port "0" is not a number`},
		{endpoint: "tcp://localhost:70000", wantErr: `port "70000" is not a number`},
		{endpoint: "unix:///run/ygg.sock", opts: []Option{WithTimeout(0)}, wantErr: "configuring the yggdrasil admin client: timeout 0s is not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint, func(t *testing.T) {
			c, err := NewClient(tt.endpoint, tt.opts...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewClient(%q) error = %v, want it to contain %q", tt.endpoint, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClient(%q): %v", tt.endpoint, err)
			}
			if c.network != tt.wantNetwork || c.address != tt.wantAddress || c.timeout != tt.wantTimeout || c.Endpoint() != tt.endpoint {
				t.Fatalf("NewClient(%q) = %s %s %v, want %s %s %v", tt.endpoint, c.network, c.address, c.timeout, tt.wantNetwork, tt.wantAddress, tt.wantTimeout)
			}
		})
	}
}
