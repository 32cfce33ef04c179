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
	return readPublished[man8env.Health](pr, st, man8env.HealthPath, "the app's health")
}

// readPublished reads the JSON file that man8s-init publishes at path in
// a running machine, through its leader's root (/proc/LEADER/root): nil
// when the machine is not running or the file is not there (yet).
func readPublished[T any](pr Prober, st State, path, what string) (*T, error) {
	if !st.Running || st.Leader <= 0 {
		return nil, nil
	}
	full := filepath.Join(pr.proc(), strconv.Itoa(st.Leader), "root", path)
	data, err := os.ReadFile(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s: %w", what, full, err)
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("reading %s at %s: %w", what, full, err)
	}
	return &v, nil
}

// HealthString is the HEALTH column of machines list: the status, or ""
// when there is none.
func HealthString(h *man8env.Health) string {
	if h == nil {
		return ""
	}
	return h.Status
}
