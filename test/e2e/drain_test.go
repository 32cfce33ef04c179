package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/man8s/mbctl/internal/testbed"
)

// slowDownload is the app of the drain test (testdata/slowdownload), a
// static binary built once.
var slowDownload struct {
	once sync.Once
	path string
	err  error
}

func slowDownloadApp(t *testing.T) string {
	t.Helper()
	slowDownload.once.Do(func() {
		slowDownload.path = filepath.Join(bins.dir, "slowdownload")
		cmd := exec.Command("go", "build", "-trimpath", "-o", slowDownload.path, "./testdata/slowdownload")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			slowDownload.err = fmt.Errorf("building testdata/slowdownload: %v\n%s", err, out)
		}
	})
	if slowDownload.err != nil {
		t.Fatal(slowDownload.err)
	}
	b, err := os.ReadFile(slowDownload.path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// download is what the client of a download got.
type download struct {
	got, size int64
	fin       bool // the body ended with the server's FIN
	err       error
}

// Proof (issue 12, item 5): a download in flight when the machine stops
// reaches its client whole. The app stops as nginx does on SIGQUIT: it
// finishes the response, closes the connection and exits; the rest of the
// 64 MB then sits in the kernel's buffer of the closed socket. The client,
// in the host's namespace, reads at 32 MB/s and asks for the stop 16 MB
// in; from the moment the server has handed its last byte to the kernel it
// stalls, as slow clients do, until man8s-init has said what it does
// about the queued data, so that the data is certainly still queued when
// the app exits. With the drain (the default), man8s-init waits for it and
// the client gets every byte and the FIN; with MAN8S_DRAIN_TIMEOUT=0 the
// rest vanishes with the machine's network namespace, and the client gets
// neither the bytes nor a FIN or RST (the loss the issue measured).
func TestDrainDeliversInFlightDownload(t *testing.T) {
	testbed.RequireT(t, "systemd-nspawn", busybox)
	const size = 64_000_000
	app := slowDownloadApp(t)
	h := testbed.NewHostT(t, testbed.Options{})
	for _, tt := range []struct {
		name  string
		env   string
		drain bool
	}{
		{"drain", "", true},
		{"drain off", "MAN8S_DRAIN_TIMEOUT=0\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := startNetMachine(t, h, machineSpec{
				Env:   fmt.Sprintf("MAN8S_APPLICATION_ARGS=/slowdownload\nMAN8S_STOP_SIGNAL=SIGQUIT\nMAN8S_STOP_TIMEOUT=60\nSIZE=%d\n%s", size, tt.env),
				Files: map[string]string{"slowdownload": app},
			})
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			base := fmt.Sprintf("http://[%s]", m.Ygg)
			waitUntil(t, m, 30*time.Second, "the app's answer", func() bool {
				_, err := fetch(ctx, h, base+"/")
				return err == nil
			})

			handedOver := regexp.MustCompile(fmt.Sprintf(`slowdownload: GET /big 200 %d <nil>`, size))
			resume := func() bool { return strings.Contains(m.Out.String(), "man8s-init: drain: ") }
			if !tt.drain {
				resume = func() bool {
					select {
					case <-m.done:
						return true
					default:
						return false
					}
				}
			}
			var stopped time.Time
			ended := make(chan time.Time, 1)
			go func() { <-m.done; ended <- time.Now() }()
			d := fetchSlowly(ctx, t, h, m, net.JoinHostPort(m.Ygg.String(), "80"), func(got int64) {
				if got >= 16<<20 && stopped.IsZero() {
					stopped = time.Now()
					if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
						t.Errorf("stopping the machine: %v", err)
					}
				}
				if handedOver.MatchString(m.Out.String()) && !resume() {
					if !poll(30*time.Second, nil, resume) {
						t.Errorf("man8s-init never got to the drain")
					}
				}
			})
			var end time.Time
			select {
			case end = <-ended:
			case <-time.After(30 * time.Second):
				t.Fatalf("the machine did not end 30s after its app\n%s", m.Out.String())
			}
			out := m.Out.String()
			t.Logf("client got %d of %d bytes (%d lost), FIN: %v, read error: %v; the machine ended %s after the stop",
				d.got, size, size-d.got, d.fin, d.err, end.Sub(stopped).Round(time.Millisecond))
			for _, l := range regexp.MustCompile(`(?m)^man8s-init: (app: exited|drain: ).*$`).FindAllString(out, -1) {
				t.Log(l)
			}
			if d.size != size {
				t.Fatalf("Content-Length %d, want %d\n%s", d.size, size, out)
			}
			if !handedOver.MatchString(out) || !strings.Contains(out, "slowdownload: gracefully shut down") {
				t.Errorf("the app did not finish the response and stop gracefully:\n%s", out)
			}
			if !strings.Contains(out, "man8s-init: app: exited with status 0") || m.err != nil {
				t.Errorf("the machine did not end with the app's status 0 (%v):\n%s", m.err, out)
			}
			if !tt.drain {
				if !strings.Contains(out, "man8s-init: drain: off (MAN8S_DRAIN_TIMEOUT=0)") {
					t.Errorf("man8s-init did not say the drain was off:\n%s", out)
				}
				if d.got >= size || d.fin {
					t.Errorf("without the drain the client still got %d of %d bytes (FIN: %v): the test no longer shows the loss", d.got, size, d.fin)
				}
				return
			}
			if d.got != size || !d.fin {
				t.Errorf("the client got %d of %d bytes (FIN: %v, read error: %v), want all and the FIN\n%s", d.got, size, d.fin, d.err, out)
			}
			if !regexp.MustCompile(`man8s-init: drain: waiting for 1 TCP connection with [\d.]+ [KM]iB queued \(up to 5s\)\r?\n`).MatchString(out) ||
				!regexp.MustCompile(`man8s-init: drain: done in \d\S*\r?\n`).MatchString(out) {
				t.Errorf("man8s-init did not log the drain it waited for:\n%s", out)
			}
		})
	}
}

// fetchSlowly downloads /big from addr at about 32 MB/s, calling each
// after every read with the bytes so far, until the body ends or the
// connection stalls for 3s after the machine has ended.
func fetchSlowly(ctx context.Context, t *testing.T, h *testbed.Host, m *netMachine, addr string, each func(got int64)) download {
	t.Helper()
	conn, err := h.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(deadline)
	}
	go func() {
		// Once the machine is gone, whatever the client will get has
		// arrived: a missing FIN shows as a timeout.
		select {
		case <-m.done:
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		case <-ctx.Done():
		}
	}()
	if _, err := fmt.Fprintf(conn, "GET /big HTTP/1.0\r\nHost: %s\r\n\r\n", m.Name); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d := download{size: resp.ContentLength}
	tick := time.NewTicker(2 * time.Millisecond) // 64 KiB each: 32 MB/s
	defer tick.Stop()
	buf := make([]byte, 64<<10)
	for d.err == nil {
		<-tick.C
		var n int
		n, d.err = resp.Body.Read(buf)
		d.got += int64(n)
		each(d.got)
	}
	if errors.Is(d.err, io.EOF) && d.got == d.size {
		// The body is complete; the stream must end right there.
		_, err := br.ReadByte()
		d.fin, d.err = errors.Is(err, io.EOF), err
	}
	return d
}
