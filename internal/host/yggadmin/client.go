// Package yggadmin talks to the host's Yggdrasil node through its admin
// socket: the node's address and the subnet its machines get.
package yggadmin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/man8s/mbctl/internal/format/yggaddr"
)

// ErrUnreachable is matched (errors.Is) by the errors of a Client whose
// Yggdrasil node is not there: the admin socket does not exist or nothing
// accepts connections on the endpoint. Callers that can do without the node,
// for example with a configured prefix, fall back on it.
var ErrUnreachable = errors.New("yggdrasil admin endpoint unreachable")

// DefaultTimeout bounds one admin request (connect, send, answer) unless
// WithTimeout says otherwise.
const DefaultTimeout = 2 * time.Second

// maxReply bounds what GetSelf reads from the node; a getself answer is
// about 400 bytes.
const maxReply = 1 << 20

// excerptLen is how much of a malformed reply an error quotes.
const excerptLen = 120

// requestFormat is one admin request as yggdrasilctl sends it. Every
// release from 0.4 to 0.5 accepts this form: 0.4.7 was checked against the
// running binary, 0.5.12 read from its source (src/admin/admin.go). Command
// names are case-insensitive; keepalive false makes the node hang up after
// answering.
const requestFormat = `{"request":%q,"arguments":{},"keepalive":false}`

// Self is what a Yggdrasil node reports about itself (getself).
type Self struct {
	// Address is the node's own address, in 200::/7.
	Address netip.Addr
	// Subnet is the /64 the node routes to machines behind it, in 300::/8.
	Subnet netip.Prefix
	// BuildName and BuildVersion name the node's build ("yggdrasil",
	// "0.5.12"); Debian's 0.4.7 package reports "unknown" for both.
	BuildName, BuildVersion string
	// PublicKey is the node's ed25519 public key, in hex.
	PublicKey string
}

// Option configures a Client.
type Option func(*options) error

type options struct {
	timeout time.Duration
}

// WithTimeout bounds each request to the node: connecting, sending and
// reading the answer together. The default is DefaultTimeout (2s); d must be
// positive.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout %v is not positive", d)
		}
		o.timeout = d
		return nil
	}
}

// Client talks to one Yggdrasil node's admin socket with the JSON protocol
// that yggdrasilctl speaks: one request object per connection, one answer
// object back. It works with yggdrasil 0.4.x and 0.5.x. A Client holds no
// connection and is safe for concurrent use.
type Client struct {
	endpoint string // as given, for messages
	network  string // "unix" or "tcp"
	address  string // socket path or host:port
	timeout  time.Duration

	// dial is net.Dialer.DialContext; tests replace it to produce errors
	// that a root test process cannot provoke.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// NewClient returns a client for the admin endpoint, in the form of
// Yggdrasil's AdminListen setting: unix:///path/to/yggdrasil.sock (an
// absolute path, or @name for an abstract socket) or tcp://host:port.
func NewClient(endpoint string, opts ...Option) (*Client, error) {
	network, address, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring the yggdrasil admin client: %w", err)
		}
	}
	var d net.Dialer
	return &Client{endpoint: endpoint, network: network, address: address, timeout: o.timeout, dial: d.DialContext}, nil
}

// Endpoint returns the endpoint the client was made for.
func (c *Client) Endpoint() string { return c.endpoint }

// ParseEndpoint checks an admin endpoint (unix:///path, unix://@abstract or
// tcp://host:port) and returns the network and address to dial.
func ParseEndpoint(endpoint string) (network, address string, err error) {
	const hint = "use unix:///path/to/yggdrasil.sock or tcp://host:port, as in yggdrasil's AdminListen"
	scheme, rest, ok := strings.Cut(endpoint, "://")
	if !ok {
		return "", "", fmt.Errorf("yggdrasil admin endpoint %q has no scheme: %s", endpoint, hint)
	}
	switch strings.ToLower(scheme) {
	case "unix":
		if !strings.HasPrefix(rest, "/") && !strings.HasPrefix(rest, "@") {
			return "", "", fmt.Errorf("yggdrasil admin endpoint %q: the socket path must be absolute (unix:///run/yggdrasil.sock, three slashes)", endpoint)
		}
		if len(rest) == 1 || strings.ContainsRune(rest, 0) {
			return "", "", fmt.Errorf("yggdrasil admin endpoint %q: the socket path is missing or invalid: %s", endpoint, hint)
		}
		return "unix", rest, nil
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("yggdrasil admin endpoint %q: %w: %s", endpoint, err, hint)
		}
		if host == "" {
			return "", "", fmt.Errorf("yggdrasil admin endpoint %q has no host: %s", endpoint, hint)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return "", "", fmt.Errorf("yggdrasil admin endpoint %q: port %q is not a number from 1 to 65535", endpoint, port)
		}
		return "tcp", rest, nil
	default:
		return "", "", fmt.Errorf("yggdrasil admin endpoint %q: scheme %q is not supported: %s", endpoint, scheme, hint)
	}
}

// clientError is a one-line message that still matches its causes with
// errors.Is and errors.As (ErrUnreachable, fs.ErrNotExist,
// os.ErrDeadlineExceeded, syscall errors ...).
type clientError struct {
	msg    string
	causes []error
}

func (e *clientError) Error() string   { return e.msg }
func (e *clientError) Unwrap() []error { return e.causes }

// what names the endpoint in messages.
func (c *Client) what() string {
	if c.network == "unix" {
		return "yggdrasil admin socket " + c.address
	}
	return "yggdrasil admin endpoint " + c.endpoint
}

// GetSelf asks the node for its own address and subnet.
func (c *Client) GetSelf(ctx context.Context) (Self, error) {
	raw, err := c.request(ctx, "getself")
	if err != nil {
		return Self{}, err
	}
	return c.parseSelf(raw)
}

// request sends the admin command name and returns the "response" member
// of a successful answer.
func (c *Client) request(ctx context.Context, name string) (json.RawMessage, error) {
	// budget is what the messages call the timeout: ours, or the caller's
	// if that is shorter.
	budget := c.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < budget {
		budget = time.Until(d).Round(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	conn, err := c.dial(ctx, c.network, c.address)
	if err != nil {
		return nil, c.dialError(ctx, budget, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return nil, fmt.Errorf("talking to %s: setting the deadline: %w", c.what(), err)
		}
	}
	// A cancelled context interrupts a blocked read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := fmt.Fprintf(conn, requestFormat, name); err != nil {
		return nil, c.ioError(ctx, budget, "sending the request", err)
	}
	var got bytes.Buffer
	dec := json.NewDecoder(io.TeeReader(io.LimitReader(conn, maxReply), &got))
	var env struct {
		Status   string          `json:"status"`
		Error    string          `json:"error"`
		Response json.RawMessage `json:"response"`
	}
	if err := dec.Decode(&env); err != nil {
		if got.Len() == 0 && errors.Is(err, io.EOF) {
			return nil, &clientError{
				msg:    c.what() + " closed the connection without answering: is it a yggdrasil admin socket?",
				causes: []error{err},
			}
		}
		var netErr net.Error
		if errors.As(err, &netErr) || ctx.Err() != nil {
			return nil, c.ioError(ctx, budget, "reading the answer", err)
		}
		return nil, c.malformed(got.Bytes(), err)
	}
	switch env.Status {
	case "success":
		return env.Response, nil
	case "error":
		msg := env.Error
		if msg == "" {
			// Older releases put the message in the response object.
			var inner struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(env.Response, &inner)
			msg = inner.Error
		}
		if msg == "" {
			msg = "no reason given"
		}
		return nil, fmt.Errorf("%s answered %s with an error: %s", c.what(), name, oneLine(msg))
	default:
		return nil, c.malformed(got.Bytes(), fmt.Errorf("status %q is neither \"success\" nor \"error\"", env.Status))
	}
}

// dialError explains why connecting failed.
func (c *Client) dialError(ctx context.Context, budget time.Duration, err error) error {
	const notRunning = "is yggdrasil running? or set network.ygg_prefix in the config"
	switch {
	case errors.Is(err, syscall.ENOENT):
		return &clientError{
			msg:    fmt.Sprintf("%s does not exist: %s", c.what(), notRunning),
			causes: []error{ErrUnreachable, err},
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &clientError{
			msg:    fmt.Sprintf("%s refused the connection: %s", c.what(), notRunning),
			causes: []error{ErrUnreachable, err},
		}
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &clientError{
			msg:    fmt.Sprintf("permission denied on %s: %s", c.what(), c.permissionHint()),
			causes: []error{err},
		}
	case ctx.Err() != nil, errors.Is(err, os.ErrDeadlineExceeded):
		return c.ioError(ctx, budget, "connecting", err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return c.ioError(ctx, budget, "connecting", err)
	}
	return fmt.Errorf("connecting to %s: %w", c.what(), err)
}

// permissionHint tells how to get access to the unix socket, naming the
// group that owns it when it can be found.
func (c *Client) permissionHint() string {
	const generic = "run mbctl as root or add your user to the socket's group"
	if c.network != "unix" {
		return "run mbctl as root"
	}
	fi, err := os.Stat(c.address)
	if err != nil {
		return generic
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return generic
	}
	if st.Gid == 0 {
		return "run mbctl as root (the socket belongs to group root)"
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	g, err := user.LookupGroupId(gid)
	if err != nil {
		return fmt.Sprintf("%s (gid %s)", generic, gid)
	}
	return fmt.Sprintf("%s %q (usermod -aG %s USER, then log in again)", generic, g.Name, g.Name)
}

// ioError explains a failed read or write, telling a timeout and a
// cancellation apart from other failures.
func (c *Client) ioError(ctx context.Context, budget time.Duration, doing string, err error) error {
	var netErr net.Error
	switch {
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("talking to %s: %s: %w", c.what(), doing, ctx.Err())
	case ctx.Err() != nil, errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		// The connection's deadline is the context's, and may fire first.
		return &clientError{
			msg:    fmt.Sprintf("%s did not answer within %v while %s: yggdrasil may be hung, or the endpoint is not a yggdrasil admin socket", c.what(), budget, doing),
			causes: []error{os.ErrDeadlineExceeded, context.DeadlineExceeded, err},
		}
	}
	return fmt.Errorf("talking to %s: %s: %w", c.what(), doing, err)
}

// malformed reports an answer that is not what the protocol promises,
// quoting the start of it.
func (c *Client) malformed(got []byte, err error) error {
	return fmt.Errorf("%s sent a malformed answer (%v): %s", c.what(), err, excerpt(got))
}

// excerpt quotes at most excerptLen bytes of b, on one line.
func excerpt(b []byte) string {
	s := string(b)
	if len(s) > excerptLen {
		return strconv.Quote(s[:excerptLen]) + "..."
	}
	return strconv.Quote(s)
}

// oneLine keeps a message from the node on one line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// selfEntry holds the fields getself reports. 0.4.7 and 0.5 answer with it
// directly; older releases nest it in {"self": {"<address>": {...}}}.
type selfEntry struct {
	BuildName    string `json:"build_name"`
	BuildVersion string `json:"build_version"`
	PublicKey    string `json:"key"`
	Address      string `json:"address"`
	Subnet       string `json:"subnet"`
}

func (c *Client) parseSelf(raw json.RawMessage) (Self, error) {
	var r struct {
		selfEntry
		Self map[string]selfEntry `json:"self"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return Self{}, c.malformed(raw, fmt.Errorf("getself: %w", err))
	}
	e := r.selfEntry
	if e.Address == "" && len(r.Self) == 1 {
		for addr, entry := range r.Self {
			e = entry
			e.Address = addr
		}
	}
	if e.Address == "" || e.Subnet == "" {
		return Self{}, c.malformed(raw, errors.New("getself: no address or subnet"))
	}
	addr, err := netip.ParseAddr(e.Address)
	if err != nil || !addr.Is6() || addr.Zone() != "" || !yggaddr.Overlay().Contains(addr) {
		return Self{}, c.malformed(raw, fmt.Errorf("getself: address %q is not an address in 200::/7", e.Address))
	}
	subnet, err := netip.ParsePrefix(e.Subnet)
	if err != nil || !subnet.Addr().Is6() || !yggaddr.Overlay().Contains(subnet.Addr()) || subnet.Bits() < 7 {
		return Self{}, c.malformed(raw, fmt.Errorf("getself: subnet %q is not a prefix in 200::/7", e.Subnet))
	}
	return Self{
		Address:      addr,
		Subnet:       subnet.Masked(),
		BuildName:    e.BuildName,
		BuildVersion: e.BuildVersion,
		PublicKey:    e.PublicKey,
	}, nil
}
