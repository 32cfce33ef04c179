package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/man8s/mbctl/internal/format/nspawnport"
	"github.com/man8s/mbctl/internal/host/machine"
)

// publishHelp says where a published port is reachable; shared by the
// publish verbs and machines pull --publish.
const publishHelp = `A published port is systemd-nspawn's Port= in the machine's container.nspawn
([Network] Port=tcp:HOSTPORT:PORT). When the machine starts, nspawn adds
DNAT rules on the host (nftables table io.systemd.nat, made over netlink:
no nft tool needed; iptables where the kernel lacks nftables) that send connections to HOSTPORT on any address of
the host to PORT of the machine: over IPv4 to the machine's DHCP address,
over IPv6 to its Yggdrasil address. It removes them when the machine stops.

Where it is reachable (measured with systemd 252):
  other hosts         yes, on the host's IPv4 and IPv6 addresses; the app
                      sees the client's own address (a client inside
                      fc00::/64, the machines' ULA prefix, is masqueraded)
  the host itself     yes, on the host's own addresses other than loopback
                      (the bridge's, the LAN's)
  127.0.0.1, [::1]    no: nspawn's rules leave loopback alone
  link-local IPv6     no: the kernel does not forward from fe80:: sources
nspawn's Port= has no host address, so there is no HOSTIP: form: a port is
published on every address of the host. A host service listening on
HOSTPORT itself no longer gets connections from other hosts, and a host
firewall that drops forwarded packets drops these too. A machine of template
host_network cannot publish: its ports are the host's already.`

// MachinesPublishOptions are the inputs of `machines publish` and
// `machines unpublish`.
type MachinesPublishOptions struct {
	MachineDeps
	Name  string
	Specs []string
	// All (unpublish) removes every published port.
	All  bool
	JSON bool
}

// NewCmdMachinesPublish builds `machines publish`; runF, if not nil,
// replaces machinesPublishRun (tests).
func NewCmdMachinesPublish(f *Factory, runF func(context.Context, *MachinesPublishOptions) error) *cobra.Command {
	opts := &MachinesPublishOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:   "publish NAME HOSTPORT[:PORT][/tcp|udp]...",
		Short: "Publish a machine's port on the host (nspawn Port=)",
		Long: `Publish ports of machine NAME on the host: each HOSTPORT[:PORT][/tcp|udp]
adds a Port= line to the machine's container.nspawn (your comments and order
kept). PORT defaults to HOSTPORT, the protocol to tcp. A port published
already is not added again; a host port and protocol that this machine
sends to another port, or that another machine publishes, is refused,
naming it. nspawn reads Port= when the machine starts: a running machine
gets the change at its next start ('mbctl machines restart NAME').

` + publishHelp,
		Example: `  mbctl machines publish web 8080:80             # host port 8080 to the machine's 80
  mbctl machines publish dns 53/udp 53/tcp        # the same port over both protocols
  mbctl machines restart web                      # a running machine: apply it
  curl http://$(hostname -I | cut -d' ' -f1):8080/   # from the host: a non-loopback address
  mbctl machines show web                         # Published: 8080 -> 80/tcp`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("%s takes NAME and one or more HOSTPORT[:PORT][/tcp|udp] (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Specs = args[0], args[1:]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesPublishRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was published as JSON")
	return cmd
}

// NewCmdMachinesUnpublish builds `machines unpublish`; runF, if not nil,
// replaces machinesUnpublishRun (tests).
func NewCmdMachinesUnpublish(f *Factory, runF func(context.Context, *MachinesPublishOptions) error) *cobra.Command {
	opts := &MachinesPublishOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:   "unpublish NAME HOSTPORT[/tcp|udp]...",
		Short: "Stop publishing a machine's port on the host",
		Long: `Remove published ports of machine NAME: the Port= lines of container.nspawn
for each HOSTPORT (tcp unless /udp), whatever port of the machine they go
to; HOSTPORT:PORT removes the line only if it goes to PORT. --all removes
every Port= line. A port that is not published is an error naming it, and
then nothing is removed. The rest of the file, comments included, stays.
A running machine keeps the port open until its next start ('mbctl
machines restart NAME'): nspawn removes its rule when the machine stops.`,
		Example: `  mbctl machines unpublish web 8080
  mbctl machines unpublish dns 53/udp 53/tcp
  mbctl machines unpublish web --all`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usagef("%s takes NAME and one or more HOSTPORT[/tcp|udp], or --all", cmd.CommandPath())
			case len(args) == 1 && !opts.All:
				return usagef("%s %s: which ports? Give HOSTPORT[/tcp|udp] (see 'mbctl machines show %s'), or --all", cmd.CommandPath(), args[0], args[0])
			case len(args) > 1 && opts.All:
				return usagef("%s: --all or ports, not both", cmd.CommandPath())
			}
			return nil
		},
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Specs = args[0], args[1:]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesUnpublishRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.All, "all", false, "remove every published port of the machine")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print what was removed as JSON")
	return cmd
}

// parsePublishSpecs parses publish specs, collecting every bad one.
func parsePublishSpecs(flag string, specs []string) ([]nspawnport.Port, error) {
	var ports []nspawnport.Port
	var errs []error
	for _, s := range specs {
		p, err := nspawnport.ParseSpec(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ports = append(ports, p)
	}
	if err := errors.Join(errs...); err != nil {
		if flag != "" {
			return nil, usagef("%s: %v", flag, err)
		}
		return nil, usagef("%v", err)
	}
	if err := machine.CheckPortList(ports); err != nil {
		return nil, usagef("%v", err)
	}
	return ports, nil
}

// publishReport is the --json form of publish and unpublish.
type publishReport struct {
	machine.PublishResult
	// Running: the machine runs, and gets the change at its next start.
	Running bool `json:"running"`
}

func machinesPublishRun(_ context.Context, opts *MachinesPublishOptions) error {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	ports, err := parsePublishSpecs("", opts.Specs)
	if err != nil {
		return err
	}
	res, err := machine.Publish(cfg.Paths, p.Name, ports)
	if err != nil {
		return err
	}
	return opts.report(p, res)
}

func machinesUnpublishRun(_ context.Context, opts *MachinesPublishOptions) error {
	p, cfg, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	var matches []machine.PortMatch
	var errs []error
	for _, s := range opts.Specs {
		port, err := nspawnport.ParseSpec(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hostPart, _, _ := strings.Cut(s, "/")
		matches = append(matches, machine.PortMatch{Port: port, Exact: strings.Contains(hostPart, ":")})
	}
	if err := errors.Join(errs...); err != nil {
		return usagef("%v", err)
	}
	res, err := machine.Unpublish(cfg.Paths, p.Name, matches, opts.All)
	if err != nil {
		return err
	}
	return opts.report(p, res)
}

// report prints what publish or unpublish did, and that a running machine
// gets it at its next start.
func (opts *MachinesPublishOptions) report(p machine.Paths, res machine.PublishResult) error {
	running := false
	if st, err := opts.Prober.Probe(p); err == nil {
		running = st.Running
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, publishReport{PublishResult: res, Running: running})
	}
	w := opts.IO.Out
	for _, port := range res.Added {
		fmt.Fprintf(w, "Published %s of machine %s on the host's port %s (Port=%s).\n", portInMachine(port), p.Name, port.HostKey(), port.Value())
	}
	for _, port := range res.Present {
		fmt.Fprintf(w, "Machine %s publishes %s already.\n", p.Name, describePublished(port))
	}
	for _, port := range res.Removed {
		fmt.Fprintf(w, "Unpublished host port %s of machine %s (was Port=%s).\n", port.HostKey(), p.Name, port.Value())
	}
	if len(res.Removed) == 0 && len(res.Added) == 0 && len(res.Present) == 0 {
		fmt.Fprintf(w, "Machine %s publishes no ports.\n", p.Name)
	}
	if res.Changed() {
		fmt.Fprintf(opts.IO.ErrOut, "Changed %s.\n", res.Settings)
		if running {
			fmt.Fprintf(opts.IO.ErrOut, "Machine %s is running: nspawn reads Port= at start, so the change takes effect at its next start (mbctl machines restart %s).\n", p.Name, p.Name)
		}
	}
	return nil
}

func portInMachine(p nspawnport.Port) string {
	return fmt.Sprintf("port %d/%s", p.Container, p.Protocol)
}

// describePublished is one published port as machines show says it:
// "8080 -> 80/tcp".
func describePublished(p nspawnport.Port) string {
	return fmt.Sprintf("%d -> %d/%s", p.Host, p.Container, p.Protocol)
}

// describePublishedList is the Published row of machines show.
func describePublishedList(ports []nspawnport.Port) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = describePublished(p)
	}
	return strings.Join(parts, ", ")
}

// printPublishNote says, after a pull with --publish, which ports the
// machine publishes.
func printPublishNote(w io.Writer, ports []nspawnport.Port) {
	if len(ports) > 0 {
		fmt.Fprintf(w, "Published on the host (host port -> machine): %s; not on 127.0.0.1 (see 'mbctl machines publish --help').\n", describePublishedList(ports))
	}
}
