// Command mbctl is the command-line tool of Man8S: it turns OCI images into
// systemd-nspawn machines. See `mbctl --help`.
//
// mbctl is also a multi-call binary: started under the name man8s-init (as
// `mbctl oci man8init` installs it when no separate man8s-init is found),
// it is the machine's init, exactly as cmd/man8s-init.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/cli"
	"github.com/man8s/mbctl/internal/initd"
	"github.com/man8s/mbctl/internal/iostreams"
	"github.com/man8s/mbctl/internal/man8init"
)

func main() {
	if filepath.Base(os.Args[0]) == man8init.InitName {
		os.Exit(initMain(os.Args[1:]))
	}
	os.Exit(cli.Main(os.Args[1:], iostreams.System()))
}

// initMain is cmd/man8s-init's main.
func initMain(args []string) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "version") {
		bi := buildinfo.Get()
		fmt.Printf("man8s-init %s (commit %s, %s; multi-call mbctl)\n", bi.Version, bi.Commit, bi.GoVersion)
		return 0
	}
	if len(args) > 0 && args[0] == initd.KeepLeaseArg {
		return initd.KeepLease(context.Background(), initd.Options{})
	}
	return initd.Run(context.Background(), initd.Options{})
}
