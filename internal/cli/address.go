package cli

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/format/yggaddr"
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
	cmd.AddCommand(newAddressGetCmd(f), newAddressGetSuffixCmd(f))
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

func newAddressGetCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print machine NAME's address in this host's Yggdrasil subnet",
		Example: `  $ mbctl address get TestBWContainer3
  300:2e98:a4b0:1789:1d44:bc13:a177:c4d`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := machine.ValidateName(name); err != nil {
				return err
			}
			cfg, _, err := f.Config()
			if err != nil {
				return err
			}
			subnet, source, err := yggadmin.HostSubnet(cmd.Context(), cfg.Network.YggAdmin, cfg.Network.YggPrefix)
			if err != nil {
				return err
			}
			f.Logger().Debug("host yggdrasil subnet", "subnet", subnet, "source", source)
			addr, err := yggaddr.Address(subnet, name)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(f.IO.Out, addressReport{Name: name, Suffix: yggaddr.Suffix(name), Address: &addr, Subnet: subnet.String(), Source: source})
			}
			_, err = fmt.Fprintln(f.IO.Out, addr)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print name, suffix, address and the subnet's source as JSON")
	return cmd
}

func newAddressGetSuffixCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "getsuffix NAME",
		Short: "Print the host-independent suffix of machine NAME's address (prefix ::/64)",
		Long: `Print machine NAME's address in the subnet ::/64: the part of its Yggdrasil
address that does not depend on the host. Needs no Yggdrasil. With --json the
full address is included when this host's subnet is known.`,
		Example: `  $ mbctl address getsuffix TestBWContainer3
  ::1d44:bc13:a177:c4d`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := machine.ValidateName(name); err != nil {
				return err
			}
			suffix := yggaddr.Suffix(name)
			if !asJSON {
				_, err := fmt.Fprintln(f.IO.Out, suffix)
				return err
			}
			report := addressReport{Name: name, Suffix: suffix}
			if cfg, _, err := f.Config(); err == nil {
				if subnet, source, err := yggadmin.HostSubnet(cmd.Context(), cfg.Network.YggAdmin, cfg.Network.YggPrefix); err == nil {
					if addr, err := yggaddr.Address(subnet, name); err == nil {
						report.Address, report.Subnet, report.Source = &addr, subnet.String(), source
					}
				} else {
					f.Logger().Debug("host subnet unknown; printing the suffix only", "err", err)
				}
			}
			return writeJSON(f.IO.Out, report)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print name, suffix and (when known) the full address as JSON")
	return cmd
}
