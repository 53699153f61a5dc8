// Package ofdlock takes and tests open file description locks (fcntl
// F_OFD_SETLK) on whole files: the liveness signal teamdwarm's processes
// give each other across containers that share a directory.
//
// The kernel drops such a lock when the last file descriptor of its open
// file description is closed, which includes the holder's death by any
// signal; a process in another container that sees the same file (a bind
// mount of the same directory) can ask whether it is held without taking
// it. The holder writes a line saying who it is into the file, for the
// error a second holder gets.
package ofdlock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrHeld is matched (errors.Is) when another open file description holds
// the lock.
var ErrHeld = errors.New("held by another process")

// Lock is a held lock; Release drops it.
type Lock struct {
	f    *os.File
	path string
}

func whole(typ int16) *unix.Flock_t { return &unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0} }

// Take takes the exclusive lock on path, creating the file (mode 0600) if
// needed, and writes who into it. The descriptor is close-on-exec: a child
// does not keep the lock alive after its parent died. If another holds the
// lock, the error matches ErrHeld and says who.
func Take(path, who string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, whole(unix.F_WRLCK)); err != nil {
		holder := readWho(f)
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("lock %s: %w: %s", path, ErrHeld, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Written over a previous holder's line, then cut to length: a
	// truncate to 0 bytes would make ext4 (auto_da_alloc) allocate and
	// write the file back at the next close of any descriptor of it,
	// which is the first Holder call, in another process's time.
	line := []byte(who + "\n")
	if _, err := f.WriteAt(line, 0); err == nil {
		_ = f.Truncate(int64(len(line)))
	}
	return &Lock{f: f, path: path}, nil
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release drops the lock. With remove, the file is removed first (while
// the lock is still held, so no other holder's file is removed).
func (l *Lock) Release(remove bool) {
	if l == nil || l.f == nil {
		return
	}
	if remove {
		_ = os.Remove(l.path)
	} else {
		_ = l.f.Truncate(0)
	}
	l.f.Close()
	l.f = nil
}

// Holder says whether the lock on path is held and, if so, by whom (the
// line the holder wrote, or "a process"). A missing file is not held.
func Holder(path string) (who string, held bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("lock %s: %w", path, err)
	}
	defer f.Close()
	lk := whole(unix.F_WRLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, lk); err != nil {
		return "", false, fmt.Errorf("lock %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return "", false, nil
	}
	return readWho(f), true, nil
}

func readWho(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	if s := strings.TrimSpace(string(b[:n])); s != "" {
		return s
	}
	return "a process"
}
