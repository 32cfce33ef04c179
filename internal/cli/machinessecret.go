package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/man8s/mbctl/internal/format/man8env"
	"github.com/man8s/mbctl/internal/host/machine"
	"github.com/man8s/mbctl/internal/host/secret"
)

func newMachinesSecretCmd(f *Factory) *cobra.Command {
	cmd := groupCmd("secret", "Set, list and remove a machine's secrets",
		`A secret is a value the app needs (a password, a token) that stays out of
man8env.env and out of every output of mbctl. Each one is a file (mode 0600)
in the machine's config dir, in secrets/ (mode 0700); the machine's settings
bind that dir read-only at /run/secrets, and man8s-init gives each secret to
the app as an environment variable of the same name, over a variable of that
name in man8env.env. The app also finds it as the file /run/secrets/KEY,
readable by root in the machine.

mbctl prints the names of secrets, never their values. A running machine's
app gets a new or changed secret at its next start.`)
	cmd.Aliases = []string{"secrets"}
	cmd.AddCommand(NewCmdMachinesSecretSet(f, nil), NewCmdMachinesSecretList(f, nil), NewCmdMachinesSecretRemove(f, nil))
	return cmd
}

// MachinesSecretSetOptions are the inputs of `machines secret set`.
type MachinesSecretSetOptions struct {
	MachineDeps
	// ReadHidden reads one line from the terminal without echoing it
	// (nil: golang.org/x/term's ReadPassword on standard input).
	ReadHidden func(ctx context.Context) ([]byte, error)

	Name       string
	Key        string
	AllowEmpty bool
}

// NewCmdMachinesSecretSet builds `machines secret set`; runF, if not nil,
// replaces machinesSecretSetRun (tests).
func NewCmdMachinesSecretSet(f *Factory, runF func(context.Context, *MachinesSecretSetOptions) error) *cobra.Command {
	opts := &MachinesSecretSetOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:   "set NAME KEY",
		Short: "Set a secret of a machine, its value read from standard input",
		Long: `Set secret KEY of machine NAME. KEY is the name of the environment variable the
app gets it as: letters, digits and '_', not starting with a digit, and not a
MAN8S_ name. The value is read from standard input when that is not a
terminal (exactly one trailing newline is dropped), else asked for on the
terminal without echo. An empty value is refused unless --allow-empty.

The first secret of a machine adds one line to its container.nspawn, shown on
stderr: BindReadOnly=<config dir>/secrets:/run/secrets:idmap. A running
machine gets the secret at its next start.`,
		Example: `  mbctl machines secret set bitwarden ADMIN_TOKEN        # asks, without echo
  printf %s "$TOKEN" | mbctl machines secret set bitwarden ADMIN_TOKEN
  mbctl machines secret set postgres POSTGRES_PASSWORD < ./pg-password`,
		Args:              exactArgs("NAME", "KEY"),
		ValidArgsFunction: completeMachines(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Key = args[0], args[1]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesSecretSetRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.AllowEmpty, "allow-empty", false, "accept an empty value")
	return cmd
}

func machinesSecretSetRun(ctx context.Context, opts *MachinesSecretSetOptions) error {
	p, _, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	if err := man8env.CheckSecretName(opts.Key); err != nil {
		return err
	}
	store := secret.For(p)
	if err := store.CheckMachine(); err != nil {
		return machineMissing(p.Name, err)
	}
	value, err := opts.readValue(ctx)
	if err != nil {
		return err
	}
	defer clear(value)
	res, err := store.Set(opts.Key, value)
	if err != nil {
		return err
	}
	if res.BindAdded != "" {
		fmt.Fprintf(opts.IO.ErrOut, "Added to %s (the secrets' bind into the machine):\n  +%s\n", p.Settings, res.BindAdded)
	}
	verb := "Set"
	if res.Replaced {
		verb = "Replaced"
	}
	fmt.Fprintf(opts.IO.Out, "%s secret %s of machine %s (%d bytes).\n", verb, opts.Key, p.Name, len(value))
	if st, err := opts.Prober.Probe(p); err == nil && st.Running {
		fmt.Fprintf(opts.IO.ErrOut, "Machine %s is running: its app gets the secret at its next start (mbctl machines restart %s).\n", p.Name, p.Name)
	}
	return nil
}

// readValue reads the secret's value: all of standard input when it is not
// a terminal, less one trailing newline; else one line typed without echo.
func (opts *MachinesSecretSetOptions) readValue(ctx context.Context) ([]byte, error) {
	what := fmt.Sprintf("secret %s of machine %s", opts.Key, opts.Name)
	if !opts.IO.IsStdinTTY() {
		// One byte more than a value may have, and its newline: Set
		// refuses what is too long.
		v, err := io.ReadAll(io.LimitReader(opts.IO.In, man8env.MaxSecretSize+2))
		if err != nil {
			return nil, fmt.Errorf("reading the value of %s from standard input: %w", what, err)
		}
		v = bytes.TrimSuffix(v, []byte("\n"))
		if len(v) == 0 && !opts.AllowEmpty {
			return nil, fmt.Errorf("no value for %s: standard input is empty and not a terminal to ask on; pipe the value in (printf %%s \"$VALUE\" | mbctl machines secret set %s %s), or pass --allow-empty for an empty secret", what, opts.Name, opts.Key)
		}
		return v, nil
	}
	read := opts.ReadHidden
	if read == nil {
		read = func(ctx context.Context) ([]byte, error) { return readHidden(ctx, opts.IO.In) }
	}
	fmt.Fprintf(opts.IO.ErrOut, "Value of %s (input hidden): ", what)
	v, err := read(ctx)
	fmt.Fprintln(opts.IO.ErrOut) // the Enter that ended it was not echoed
	if err != nil {
		return nil, fmt.Errorf("reading the value of %s: %w", what, err)
	}
	if len(v) == 0 && !opts.AllowEmpty {
		return nil, fmt.Errorf("no value for %s: nothing was typed (pass --allow-empty for an empty secret)", what)
	}
	return v, nil
}

// readHidden reads a line from the terminal in without echo. Ctrl-C
// (ctx cancelled) ends the wait and gives the terminal its echo back.
func readHidden(ctx context.Context, in io.Reader) ([]byte, error) {
	f, ok := in.(*os.File)
	if !ok {
		return nil, errors.New("standard input is not a terminal")
	}
	fd := int(f.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type result struct {
		v   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := term.ReadPassword(fd)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		return nil, ctx.Err()
	}
}

// machineMissing turns the store's "no config dir" into the house's
// message for a machine that does not exist.
func machineMissing(name string, err error) error {
	if errors.Is(err, machine.ErrNotFound) {
		return fmt.Errorf("machine %s does not exist (see 'mbctl machines list')", name)
	}
	return err
}

// MachinesSecretListOptions are the inputs of `machines secret list`.
type MachinesSecretListOptions struct {
	MachineDeps
	Name string
	JSON bool
}

// NewCmdMachinesSecretList builds `machines secret list`; runF, if not
// nil, replaces machinesSecretListRun (tests).
func NewCmdMachinesSecretList(f *Factory, runF func(context.Context, *MachinesSecretListOptions) error) *cobra.Command {
	opts := &MachinesSecretListOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:     "list NAME",
		Aliases: []string{"ls"},
		Short:   "List a machine's secrets: names, sizes, when set; never values",
		Long: `List the secrets of machine NAME: each one's name, size and when it was last
set. Values are never shown.`,
		Example: `  mbctl machines secret list bitwarden
  mbctl machines secret list bitwarden --json | jq -r '.[].name'`,
		Args:              exactArgs("NAME"),
		ValidArgsFunction: completeMachines(f),
		RunE:              runOnName(&opts.Name, opts, runF, machinesSecretListRun),
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print as JSON")
	return cmd
}

func machinesSecretListRun(_ context.Context, opts *MachinesSecretListOptions) error {
	p, _, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	list, err := secret.For(p).List()
	if err != nil {
		return machineMissing(p.Name, err)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, list)
	}
	if len(list) == 0 {
		fmt.Fprintf(opts.IO.ErrOut, "Machine %s has no secrets. Set one with 'mbctl machines secret set %s KEY'.\n", p.Name, p.Name)
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tSET")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, humanBytes(s.Size), formatTime(s.Modified))
	}
	return tw.Flush()
}

// MachinesSecretRemoveOptions are the inputs of `machines secret remove`.
type MachinesSecretRemoveOptions struct {
	MachineDeps
	Name string
	Keys []string
}

// NewCmdMachinesSecretRemove builds `machines secret remove`; runF, if not
// nil, replaces machinesSecretRemoveRun (tests).
func NewCmdMachinesSecretRemove(f *Factory, runF func(context.Context, *MachinesSecretRemoveOptions) error) *cobra.Command {
	opts := &MachinesSecretRemoveOptions{MachineDeps: newMachineDeps(f)}
	cmd := &cobra.Command{
		Use:     "remove NAME KEY...",
		Aliases: []string{"rm"},
		Short:   "Remove secrets of a machine",
		Long: `Remove the secrets KEY... of machine NAME. If one of them is not there,
nothing is removed and the error names it. A running machine's app keeps the
value in its environment until its next start.`,
		Example: `  mbctl machines secret rm bitwarden ADMIN_TOKEN`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("%s takes 2 or more arguments: NAME KEY... (got %d)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		ValidArgsFunction: completeSecrets(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.Keys = args[0], args[1:]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return machinesSecretRemoveRun(cmd.Context(), opts)
		},
	}
	return cmd
}

func machinesSecretRemoveRun(_ context.Context, opts *MachinesSecretRemoveOptions) error {
	p, _, err := opts.paths(opts.Name)
	if err != nil {
		return err
	}
	if err := secret.For(p).Remove(opts.Keys...); err != nil {
		return machineMissing(p.Name, err)
	}
	noun := "secret"
	if len(opts.Keys) > 1 {
		noun = "secrets"
	}
	fmt.Fprintf(opts.IO.Out, "Removed %s %s of machine %s.\n", noun, strings.Join(opts.Keys, ", "), p.Name)
	if st, err := opts.Prober.Probe(p); err == nil && st.Running {
		fmt.Fprintf(opts.IO.ErrOut, "Machine %s is running: its app keeps the value in its environment until its next start.\n", p.Name)
	}
	return nil
}

// completeSecrets completes a machine name, then the names of its secrets.
func completeSecrets(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	machines := completeMachines(f)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return machines(cmd, args, toComplete)
		}
		cfg, _, err := f.Config()
		if err != nil || machine.ValidateName(args[0]) != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, _ := secret.For(machine.PathsFor(cfg.Paths, args[0])).Names()
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
