// Package buildinfo reports which build of mbctl is running.
//
// Version and Commit are set at link time:
//
//	go build -ldflags "-X github.com/man8s/mbctl/internal/buildinfo.version=v0.1.0 -X ...commit=abc123"
//
// A plain `go build` or `go install` falls back to what the Go toolchain
// recorded in the binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X; empty in a plain `go build`.
var (
	version string
	commit  string
)

// Info describes one build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the build information of the running binary.
func Get() Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}
