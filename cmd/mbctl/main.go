// Command mbctl is the command-line tool of Man8S: it turns OCI images into
// systemd-nspawn machines. See `mbctl --help`.
//
// mbctl is also a multi-call binary: started under the name man8s-init (as
// `mbctl oci man8init` installs it when no separate man8s-init is found),
// it is the machine's init, exactly as cmd/man8s-init.
package main

import (
	"os"
	"path/filepath"

	"github.com/man8s/mbctl/internal/cli"
	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/guest/boot"
	"github.com/man8s/mbctl/internal/host/provision/initinstall"
)

func main() {
	if filepath.Base(os.Args[0]) == initinstall.InitName {
		os.Exit(boot.Main(os.Args[1:], "; multi-call mbctl"))
	}
	os.Exit(cli.Main(os.Args[1:], iostreams.System()))
}
