package waitfor

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

func TestStatusOK(t *testing.T) {
	for _, tt := range []struct {
		line string
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\n", true},
		{"HTTP/1.0 204 No Content\r\n", true},
		{"HTTP/1.1 302 Found\r\n", true},
		{"HTTP/1.1 399\r\n", true},
		{"HTTP/1.1 404 Not Found\r\n", false},
		{"HTTP/1.1 500 Internal Server Error\r\n", false},
		{"HTTP/1.1 199 Odd\r\n", false},
		{"HTTP/2 200\r\n", false},
		{"SSH-2.0-OpenSSH_9.2\r\n", false},
		{"HTTP/1.1 20\r\n", false},
		{"", false},
	} {
		if err := statusOK(tt.line); (err == nil) != tt.ok {
			t.Errorf("statusOK(%q) = %v, want ok=%v", tt.line, err, tt.ok)
		}
	}
}

// The request is plain HTTP/1.1 with the URL's credentials as Basic auth,
// and errors never show them.
func TestCheckHTTPRequest(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var req strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
			req.WriteString(line)
		}
		got <- req.String()
		c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
	}()
	err = checkHTTP(t.Context(), "http://user:s3cret@"+l.Addr().String()+"/health?token=t0k")
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("err = %v, want the 503", err)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0k") {
		t.Errorf("the error shows secrets: %v", err)
	}
	req := <-got
	for _, want := range []string{"GET /health?token=t0k HTTP/1.1\r\n", "Host: " + l.Addr().String() + "\r\n", "Connection: close\r\n", "Authorization: Basic dXNlcjpzM2NyZXQ=\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("request lacks %q:\n%s", want, req)
		}
	}
}
