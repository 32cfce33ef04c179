package initd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// stepLogger returns a logger whose records print as step lines:
// "man8s-init: STEP: message key=value ...".
func stepLogger(w io.Writer, step string) *slog.Logger {
	return slog.New(&stepHandler{w: w, step: step, mu: &sync.Mutex{}})
}

type stepHandler struct {
	w     io.Writer
	step  string
	attrs []slog.Attr
	mu    *sync.Mutex
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
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *stepHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), attrs...)
	return &c
}

func (h *stepHandler) WithGroup(string) slog.Handler { return h }
