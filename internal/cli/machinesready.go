package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/host/machine"
)

// reportStarted says, after machines start or restart, how long the start
// took: with NotifyReady=yes, systemd's start job (which machinectl waits
// for) ends when man8s-init says the app is ready.
func (d MachineDeps) reportStarted(p machine.Paths, took time.Duration) {
	what := "started"
	if st, err := d.Prober.Probe(p); err == nil {
		if h, err := d.Prober.Health(st); err == nil && h != nil && !h.Ready.IsZero() {
			what = "ready"
			if h.ReadyCheck != "" {
				what += " (" + h.ReadyCheck + ")"
			}
		}
	}
	fmt.Fprintf(d.IO.ErrOut, "Machine %s %s after %.1fs.\n", p.Name, what, took.Seconds())
}

// watchReady gives the systemd-nspawn that machines run starts a notify
// socket of mbctl's own (unless mbctl has one from systemd already, which
// nspawn then uses) and prints when the machine says it is ready. The
// returned func stops it.
func watchReady(w io.Writer, log *slog.Logger, name string) func() {
	if os.Getenv("NOTIFY_SOCKET") != "" {
		return func() {}
	}
	dir, err := os.MkdirTemp("", "mbctl-notify-")
	if err != nil {
		log.Debug("no notify socket", "err", err)
		return func() {}
	}
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		log.Debug("no notify socket", "err", err)
		return func() {}
	}
	os.Setenv("NOTIFY_SOCKET", path)
	start := time.Now()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			log.Debug("notify", "machine", name, "message", strings.TrimSpace(msg))
			for _, l := range strings.Split(msg, "\n") {
				if l == "READY=1" {
					fmt.Fprintf(w, "mbctl: machine %s is ready after %.2fs\n", name, time.Since(start).Seconds())
				}
			}
		}
	}()
	return func() {
		os.Unsetenv("NOTIFY_SOCKET")
		conn.Close()
		os.RemoveAll(dir)
	}
}
