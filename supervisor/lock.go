package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/teamdwarm/teamdwarm/internal/sys/ofdlock"
)

// ErrBusy is matched (errors.Is) when another teamd-warm holds the record
// directory's lock.
var ErrBusy = errors.New("another teamd-warm is running")

// lockName is the lock file in the record directory. The leading dot keeps
// it out of the record readers' way.
const lockName = ".teamd-warm.lock"

// lock takes the record directory's exclusive lock for the whole flow: two
// supervisors on one directory would hand the LAGs over twice. It is an
// open file description lock: the kernel drops it when the process dies,
// so a crashed run blocks no one, and status can ask about it without
// taking it. The file holds the holder's pid and operation, for the next
// one's error.
func lock(dir string, what string) (unlock func(), err error) {
	l, err := ofdlock.Take(filepath.Join(dir, lockName), fmt.Sprintf("pid %d (%s)", os.Getpid(), what))
	if errors.Is(err, ofdlock.ErrHeld) {
		return nil, fmt.Errorf("%w: %w", ErrBusy, err)
	}
	if err != nil {
		return nil, err
	}
	return func() { l.Release(false) }, nil
}

// lockHolder says who holds dir's lock, or "" if no one does (or the lock
// file cannot be read).
func lockHolder(dir string) string {
	who, held, err := ofdlock.Holder(filepath.Join(dir, lockName))
	if err != nil || !held {
		return ""
	}
	return who
}
