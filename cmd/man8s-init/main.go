// Command man8s-init is the init Man8S installs into every machine at
// /man8s-init/man8s-init. Under systemd-nspawn's stub init (ProcessTwo=yes)
// it loads /man8env.env, restores /run and /tmp, waits for the declared
// dependencies and supervises the application: it reaps zombies, forwards
// signals and turns nspawn's stop (SIGTERM, then SIGHUP) into the image's
// own stop signal. See internal/initd.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/man8s/mbctl/internal/buildinfo"
	"github.com/man8s/mbctl/internal/initd"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		bi := buildinfo.Get()
		fmt.Printf("man8s-init %s (commit %s, %s)\n", bi.Version, bi.Commit, bi.GoVersion)
		return
	}
	os.Exit(initd.Run(context.Background(), initd.Options{}))
}
