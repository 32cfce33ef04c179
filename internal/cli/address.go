package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/cli/iostreams"
	"github.com/man8s/mbctl/internal/format/envfile"
	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/format/yggaddr"
	"github.com/man8s/mbctl/internal/host/config"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/yggadmin"
)

func newAddressCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("address", "Compute machines' Yggdrasil addresses",
		`Every machine has a fixed address in this host's Yggdrasil subnet: the subnet
prefix followed by the low bits of SHA-256 of the machine's name. The same name
always gets the same suffix, so a machine moved to another host keeps its
suffix and only the prefix changes.

The host's subnet is read from the Yggdrasil admin endpoint (network.ygg_admin);
when that is unreachable, network.ygg_prefix from the configuration is used.`)
	cmd.AddCommand(NewCmdAddressGet(f, nil), NewCmdAddressGetSuffix(f, nil))
	return cmd
}

// addressReport is the --json form of both address verbs.
type addressReport struct {
	Name    string      `json:"name"`
	Suffix  netip.Addr  `json:"suffix"`
	Address *netip.Addr `json:"address,omitempty"`
	Subnet  string      `json:"subnet,omitempty"`
	Source  string      `json:"subnet_source,omitempty"`
}

// AddressOptions are the inputs of `address get` and `address getsuffix`.
type AddressOptions struct {
	IO     *iostreams.IOStreams
	Config func() (config.Config, config.Origin, error)
	Log    *slog.Logger

	Name string
	JSON bool
}

// NewCmdAddressGet builds `address get`; runF, if not nil, replaces
// addressGetRun (tests).
func NewCmdAddressGet(f *Factory, runF func(context.Context, *AddressOptions) error) *cobra.Command {
	opts := &AddressOptions{IO: f.IO, Config: f.Config, Log: f.Logger()}
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print machine NAME's address in this host's Yggdrasil subnet",
		Long: `Print machine NAME's address in this host's Yggdrasil subnet. NAME need not
exist yet: the address follows from the name alone, so it can go into other
machines' configuration before NAME is pulled.`,
		Example: `  $ mbctl address get TestBWContainer3
  300:2e98:a4b0:1789:1d44:bc13:a177:c4d

  # reach a machine's service from any host of the mesh
  curl "http://[$(mbctl address get Man8Registry)]:5000/v2/"`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, addressGetRun),
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print name, suffix, address and the subnet's source as JSON")
	return cmd
}

func addressGetRun(ctx context.Context, opts *AddressOptions) error {
	if err := machine.ValidateName(opts.Name); err != nil {
		return err
	}
	cfg, _, err := opts.Config()
	if err != nil {
		return err
	}
	if env, err := envfile.ReadFile(machine.PathsFor(cfg.Paths, opts.Name).Env); err == nil {
		if t, _ := man8env.ParseTemplate(valueOrEmpty(env, man8env.KeyTemplate)); !man8env.HasOwnNetwork(t) {
			return fmt.Errorf("machine %s (template %s) has no address of its own: it uses the host's addresses", opts.Name, t)
		}
	}
	subnet, source, err := yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix)
	if err != nil {
		return err
	}
	opts.Log.Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
	addr, err := yggaddr.Address(subnet, opts.Name)
	if err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, addressReport{Name: opts.Name, Suffix: yggaddr.Suffix(opts.Name), Address: &addr, Subnet: subnet.String(), Source: source})
	}
	_, err = fmt.Fprintln(opts.IO.Out, addr)
	return err
}

// NewCmdAddressGetSuffix builds `address getsuffix`; runF, if not nil,
// replaces addressGetSuffixRun (tests).
func NewCmdAddressGetSuffix(f *Factory, runF func(context.Context, *AddressOptions) error) *cobra.Command {
	opts := &AddressOptions{IO: f.IO, Config: f.Config, Log: f.Logger()}
	cmd := &cobra.Command{
		Use:   "getsuffix NAME",
		Short: "Print the host-independent suffix of machine NAME's address (prefix ::/64)",
		Long: `Print machine NAME's address in the subnet ::/64: the part of its Yggdrasil
address that does not depend on the host. Needs no Yggdrasil. With --json the
full address is included when this host's subnet is known.`,
		Example: `  $ mbctl address getsuffix TestBWContainer3
  ::1d44:bc13:a177:c4d`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, addressGetSuffixRun),
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print name, suffix and (when known) the full address as JSON")
	return cmd
}

func addressGetSuffixRun(ctx context.Context, opts *AddressOptions) error {
	if err := machine.ValidateName(opts.Name); err != nil {
		return err
	}
	suffix := yggaddr.Suffix(opts.Name)
	if !opts.JSON {
		_, err := fmt.Fprintln(opts.IO.Out, suffix)
		return err
	}
	report := addressReport{Name: opts.Name, Suffix: suffix}
	if cfg, _, err := opts.Config(); err == nil {
		if subnet, source, err := yggadmin.HostSubnet(ctx, cfg.Network.YggAdmin, cfg.Network.YggPrefix); err == nil {
			if addr, err := yggaddr.Address(subnet, opts.Name); err == nil {
				report.Address, report.Subnet, report.Source = &addr, subnet.String(), source
			}
		} else {
			opts.Log.Debug("host subnet unknown; printing the suffix only", "err", err)
		}
	}
	return writeJSON(opts.IO.Out, report)
}
