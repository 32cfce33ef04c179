// Command man8s-init is the init Man8S installs into every machine at
// /man8s-init/man8s-init. It loads the machine's environment, configures its
// network and supervises the application.
//
// This build is a placeholder that only reports its version.
package main

import (
	"fmt"
	"os"

	"github.com/man8s/mbctl/internal/buildinfo"
)

func main() {
	bi := buildinfo.Get()
	fmt.Printf("man8s-init %s (commit %s, %s)\n", bi.Version, bi.Commit, bi.GoVersion)
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		return
	}
	fmt.Fprintln(os.Stderr, "man8s-init: not implemented yet in this version")
	os.Exit(1)
}
