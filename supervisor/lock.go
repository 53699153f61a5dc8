package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBusy is matched (errors.Is) when another teamd-warm holds the record
// directory's lock.
var ErrBusy = errors.New("another teamd-warm is running")

// lockName is the lock file in the record directory. The leading dot keeps
// it out of the record readers' way.
const lockName = ".teamd-warm.lock"

// wholeFile is an open file description lock on the whole file: the kernel
// drops it when the process dies, so a crashed run blocks no one, and
// F_OFD_GETLK lets status ask about it without taking it.
func wholeFile(typ int16) *unix.Flock_t { return &unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0} }

// lock takes the record directory's exclusive lock for the whole flow: two
// supervisors on one directory would hand the LAGs over twice. The file
// holds the holder's pid and operation, for the next one's error.
func lock(dir string, what string) (unlock func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, wholeFile(unix.F_WRLCK)); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("%w: %s holds %s", ErrBusy, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "pid %d (%s)\n", os.Getpid(), what)
	return func() {
		_ = f.Truncate(0)
		f.Close() // drops the lock
	}, nil
}

func readHolder(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	if s := strings.TrimSpace(string(b[:n])); s != "" {
		return s
	}
	return "a process"
}

// lockHolder says who holds dir's lock, or "" if no one does (or the lock
// file cannot be read).
func lockHolder(dir string) string {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	lk := wholeFile(unix.F_WRLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, lk); err != nil || lk.Type == unix.F_UNLCK {
		return ""
	}
	return readHolder(f)
}
