package boot

import (
	"context"
	"fmt"
	"os"

	"github.com/man8s/mbctl/internal/buildinfo"
)

// Main is man8s-init's command line: `--version`, KeepLeaseArg (the
// exec-pid1 lease renewer), or the init itself. It returns the exit
// status. cmd/man8s-init and mbctl started as man8s-init (multi-call) both
// call it; how names the binary in the version line.
func Main(args []string, how string) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "version") {
		bi := buildinfo.Get()
		fmt.Fprintf(os.Stdout, "man8s-init %s (commit %s, %s%s)\n", bi.Version, bi.Commit, bi.GoVersion, how)
		return 0
	}
	if len(args) > 0 && args[0] == KeepLeaseArg {
		return KeepLease(context.Background(), Options{})
	}
	return Run(context.Background(), Options{})
}
