package cli

import (
	"context"
	"fmt"

	"github.com/man8s/mbctl/internal/cli/iostreams"
)

// confirmFunc asks a yes/no question and returns the answer (default no);
// (*prompter).confirm is one.
type confirmFunc func(ctx context.Context, question string) (bool, error)

// confirmAction lets a destructive action go ahead: at once when yes
// (--yes) is set, else only after a yes on the terminal. Without a terminal
// it fails naming --yes, so a script never waits for an answer nobody will
// give. what names the action in errors ("clearing the cache /var/cache/man8s").
func confirmAction(ctx context.Context, ios *iostreams.IOStreams, confirm confirmFunc, yes bool, what, question string) error {
	if yes {
		return nil
	}
	if !ios.IsStdinTTY() || confirm == nil {
		return fmt.Errorf("not %s: no terminal to confirm on; pass --yes", what)
	}
	ok, err := confirm(ctx, question)
	if err != nil {
		return fmt.Errorf("not %s: %w (pass --yes to skip the question)", what, err)
	}
	if !ok {
		return fmt.Errorf("not %s: the answer was no", what)
	}
	return nil
}
