// Package hostload reads how loaded the host is, for the benchmarks'
// reports: a figure measured on a busy machine says so beside it.
package hostload

import (
	"os"
	"strings"
)

// Average returns the three load averages of /proc/loadavg ("0.52 0.58
// 0.59"), or "?" when they cannot be read.
func Average() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
