package provision

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/man8s/mbctl/internal/fsutil/journal"
	"github.com/man8s/mbctl/internal/host/config"
)

// journaled runs fn under a new journal of the run what (package journal):
// when fn fails or panics, or when keep is false (a dry run), everything
// fn recorded is rolled back; otherwise the journal is committed. What a
// rollback could not take back stays journaled for the next run's Recover.
// Create, Upgrade, Rollback and Rebuild all change the host this way.
func journaled(dirs config.Paths, what string, keep bool, log *slog.Logger, fn func(*journal.Journal) error) (err error) {
	j, err := journal.Begin(JournalDir(dirs), what)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		// Not ok: an error, or a panic on its way up.
		if !ok || !keep {
			if uerr := j.Rollback(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("cleaning up after the failure (the next mbctl run tries again): %w", uerr))
			}
			return
		}
		if cerr := j.Commit(); cerr != nil {
			log.Warn(what+": done, but its journal stayed", "journal", j.Path(), "err", cerr)
		}
	}()
	if err := fn(j); err != nil {
		return err
	}
	ok = true
	return nil
}
