package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// describeHealth is the Health row of machines show: the status, since
// when ready, the failing streak and what the last check said.
func describeHealth(h *man8env.Health) string {
	if h == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(h.Status)
	var parts []string
	if !h.Ready.IsZero() {
		parts = append(parts, "ready since "+formatTime(h.Ready))
	}
	if h.FailingStreak > 0 {
		parts = append(parts, fmt.Sprintf("%d failed checks in a row", h.FailingStreak))
	}
	if h.Restarts > 0 {
		parts = append(parts, fmt.Sprintf("restarted %d times", h.Restarts))
	}
	if c := h.HealthCheck; c != "" {
		parts = append(parts, "check "+c)
	} else if c := h.ReadyCheck; c != "" {
		parts = append(parts, "ready check "+c)
	}
	if !h.LastCheck.IsZero() {
		last := "last check " + h.LastCheck.Local().Format(time.TimeOnly)
		if out, _, _ := strings.Cut(strings.TrimSpace(h.LastOutput), "\n"); out != "" {
			last += ": " + out
		}
		parts = append(parts, last)
	}
	if len(parts) > 0 {
		b.WriteString(" (" + strings.Join(parts, "; ") + ")")
	}
	return b.String()
}
