package boot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// lockedWriter serialises writes to w. Run and KeepLease wrap their log
// in one, shared by the step lines and every step logger: netinit logs
// from several goroutines at once.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	n, err := l.w.Write(p)
	l.mu.Unlock()
	return n, err
}

// step prints one step line, "man8s-init: STEP: message", in one write.
func (l *lockedWriter) step(name, format string, args ...any) {
	fmt.Fprintf(l, "man8s-init: %s: %s\n", name, fmt.Sprintf(format, args...))
}

// stepLogger returns a logger whose records print as step lines:
// "man8s-init: STEP: message key=value ...". Each record is a single write
// to w, which loggers used at once must share (a lockedWriter).
func stepLogger(w io.Writer, step string) *slog.Logger {
	return slog.New(&stepHandler{w: w, step: step})
}

type stepHandler struct {
	w     io.Writer
	step  string
	attrs []slog.Attr
}

func (h *stepHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *stepHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "man8s-init: %s: %s", h.step, r.Message)
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *stepHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), attrs...)
	return &c
}

func (h *stepHandler) WithGroup(string) slog.Handler { return h }
