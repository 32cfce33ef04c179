// Command mbctl is the command-line tool of Man8S: it turns OCI images into
// systemd-nspawn machines. See `mbctl --help`.
package main

import (
	"os"

	"github.com/man8s/mbctl/internal/cli"
	"github.com/man8s/mbctl/internal/iostreams"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], iostreams.System()))
}
