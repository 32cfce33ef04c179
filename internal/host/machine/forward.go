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

// Reachability reads what man8s-init publishes about how a running
// machine's exposed ports are reached on its Yggdrasil address
// (man8env.ForwardPath in the machine: directly, or through its
// forwarder), as Health reads the app's health. It returns nil for a
// machine that is not running, has no ports to watch, or whose
// man8s-init does not publish it (an older one) or has not yet.
func (pr Prober) Reachability(st State) (*man8env.Reachability, error) {
	if !st.Running || st.Leader <= 0 {
		return nil, nil
	}
	path := filepath.Join(pr.proc(), strconv.Itoa(st.Leader), "root", man8env.ForwardPath)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the ports' reachability at %s: %w", path, err)
	}
	var r man8env.Reachability
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("reading the ports' reachability at %s: %w", path, err)
	}
	return &r, nil
}
