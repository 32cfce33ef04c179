package waitfor

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// checkHTTP sends one GET to rawURL and accepts an answer with a 2xx or
// 3xx status; redirects are not followed, proxies not used, https
// certificates verified against the machine's roots. It speaks the little
// HTTP/1.1 it needs itself: net/http would add a third to man8s-init's
// size. Errors never repeat the URL, which may hold credentials.
func checkHTTP(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("parsing URL: %w", ue.Err)
		}
		return errors.New("parsing URL")
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return err
	}
	defer conn.Close()
	// The context bounds the whole exchange, not only the dial.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if u.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: man8s-init\r\nAccept: */*\r\nConnection: close\r\n", u.RequestURI(), u.Host)
	if u.User != nil {
		pw, _ := u.User.Password()
		fmt.Fprintf(&req, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw)))
	}
	req.WriteString("\r\n")
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	line, err := bufio.NewReaderSize(conn, 512).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	return statusOK(line)
}

// statusOK checks an HTTP/1.x status line: 2xx and 3xx are met.
func statusOK(line string) error {
	line = strings.TrimRight(line, "\r\n")
	proto, status, _ := strings.Cut(line, " ")
	code, err := strconv.Atoi(status[:min(3, len(status))])
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil || len(status) < 3 {
		return fmt.Errorf("malformed HTTP status line %q", line[:min(len(line), 40)])
	}
	if code < 200 || code > 399 {
		return fmt.Errorf("HTTP status %s", status)
	}
	return nil
}
