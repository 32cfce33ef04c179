package envfile

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration reads vars[key] as seconds ("30") or a Go duration ("1.5s",
// "5m"); unset or blank yields def. Zero and negative values are errors,
// which name the key.
func Duration(vars map[string]string, key string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(vars[key])
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.ParseUint(v, 10, 32); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want positive seconds (30) or a duration (1.5s, 5m)", key, v)
	}
	return d, nil
}
