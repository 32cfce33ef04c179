package yggadmin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/man8s/mbctl/internal/format/yggaddr"
)

// Where HostSubnet found the subnet.
const (
	// SubnetFromNode means the running Yggdrasil node reported the subnet.
	SubnetFromNode = "yggdrasil"
	// SubnetFromConfig means the node was unreachable and the configured
	// prefix (network.ygg_prefix) was used.
	SubnetFromConfig = "config"
)

// HostSubnet returns this host's Yggdrasil subnet and where it came from
// (SubnetFromNode or SubnetFromConfig).
//
// It asks the node at the admin endpoint first. Only when the node is
// unreachable (ErrUnreachable: no socket, connection refused) or no endpoint
// is given does it fall back on the configured prefix, when there is one;
// any other failure (permission denied, timeout, a malformed answer) is
// returned, since a node that is there but misbehaves should be fixed rather
// than silently bypassed.
func HostSubnet(ctx context.Context, admin, configured string, opts ...Option) (netip.Prefix, string, error) {
	var nodeErr error
	if admin != "" {
		c, err := NewClient(admin, opts...)
		if err != nil {
			return netip.Prefix{}, "", err
		}
		self, err := c.GetSelf(ctx)
		if err == nil {
			return self.Subnet, SubnetFromNode, nil
		}
		if !errors.Is(err, ErrUnreachable) {
			return netip.Prefix{}, "", fmt.Errorf("reading this host's yggdrasil subnet: %w", err)
		}
		nodeErr = err
	}
	if configured == "" {
		if nodeErr != nil {
			return netip.Prefix{}, "", nodeErr
		}
		return netip.Prefix{}, "", errors.New("this host's yggdrasil subnet is unknown: set network.ygg_admin to the yggdrasil admin endpoint or network.ygg_prefix to the subnet in the config")
	}
	p, err := netip.ParsePrefix(configured)
	if err == nil {
		err = yggaddr.CheckPrefix(p)
	}
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("configured yggdrasil prefix network.ygg_prefix %q: %w", configured, err)
	}
	return p.Masked(), SubnetFromConfig, nil
}
