package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/man8s/mbctl/internal/host/yggadmin"

	"github.com/man8s/mbctl/internal/testbed/proc"
)

// startYggdrasil runs the Debian yggdrasil in the host's namespace with no
// multicast discovery and only the given listeners and peers, then reads its
// address and subnet through mbctl's own admin client.
func (h *Host) startYggdrasil(ctx context.Context, listen, peers []string) error {
	bin, err := exec.LookPath("yggdrasil")
	if err != nil {
		return fmt.Errorf("yggdrasil not found (apt-get install yggdrasil): %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "-genconf", "-json").Output()
	if err != nil {
		return fmt.Errorf("generating a yggdrasil config: %w", err)
	}
	conf := map[string]any{}
	if err := json.Unmarshal(out, &conf); err != nil {
		return fmt.Errorf("reading yggdrasil -genconf output: %w", err)
	}
	sock := filepath.Join(h.Dir, "yggdrasil.sock")
	h.YggAdmin = "unix://" + sock
	conf["AdminListen"] = h.YggAdmin
	conf["Peers"] = nonNil(peers)
	conf["Listen"] = nonNil(listen)
	conf["MulticastInterfaces"] = []any{}
	conf["InterfacePeers"] = map[string]any{}
	conf["IfName"] = "ygg0"
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	confPath := filepath.Join(h.Dir, "yggdrasil.conf")
	if err := os.WriteFile(confPath, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", confPath, err)
	}
	p, err := proc.Start("yggdrasil", h.Command(context.WithoutCancel(ctx), bin, "-useconffile", confPath), filepath.Join(h.Dir, "yggdrasil.log"))
	if err != nil {
		return err
	}
	h.yggdrasil = p
	if err := recordPID(h.Name, p.Pid()); err != nil {
		return err
	}

	client, err := yggadmin.NewClient(h.YggAdmin)
	if err != nil {
		return err
	}
	for {
		self, err := client.GetSelf(ctx)
		if err == nil {
			h.Ygg = self
			h.log.Debug("yggdrasil ready", "address", self.Address, "subnet", self.Subnet)
			return nil
		}
		if exitErr := p.Exited(); exitErr != nil {
			return exitErr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for yggdrasil's admin socket %s: %w (last error: %v)", sock, context.Cause(ctx), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
