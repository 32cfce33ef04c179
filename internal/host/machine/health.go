package machine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/man8s/mbctl/internal/format/man8env"
)

// Health reads what man8s-init publishes about a running machine's app
// (man8env.HealthPath in the machine), through its leader's root
// (/proc/LEADER/root). It returns nil for a machine that is not running,
// whose man8s-init does not publish it (exec-pid1 mode, an older
// man8s-init) or has not yet.
func (pr Prober) Health(st State) (*man8env.Health, error) {
	if !st.Running || st.Leader <= 0 {
		return nil, nil
	}
	path := filepath.Join(pr.proc(), strconv.Itoa(st.Leader), "root", man8env.HealthPath)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the app's health at %s: %w", path, err)
	}
	var h man8env.Health
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("reading the app's health at %s: %w", path, err)
	}
	return &h, nil
}

// HealthString is the HEALTH column of machines list: the status, or ""
// when there is none.
func HealthString(h *man8env.Health) string {
	if h == nil {
		return ""
	}
	return h.Status
}
