// Package timerslack sets the timer slack a child process starts with.
//
// A thread's timer slack (prctl PR_SET_TIMERSLACK) is how late the kernel
// may end its timed sleeps, to fire them together with other timers. It is
// per thread, and a thread or process inherits the slack of the thread
// that created it. A Go program cannot set it for the runtime's own
// threads once it runs (setting another thread's needs CAP_SYS_NICE), so a
// parent sets it for the child: the child's runtime, sysmon included, then
// starts with it.
//
// Why it matters here: sysmon sleeps 20 µs at a time while any of the
// process's goroutines runs or is in a system call. A shim woken by a
// record, a signal or a PDU on a busy two-core switch stays runnable for
// a while, and each of those sleeps is a context switch of its own; with
// a slack of a millisecond they come together, or not at all.
package timerslack

import (
	"fmt"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Get returns the calling thread's timer slack.
func Get() (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("timer slack: %w", err)
	}
	return time.Duration(ns), nil
}

// With runs start on a thread whose timer slack is d, so that the
// processes start creates (os.StartProcess, exec.Cmd.Start: they fork on
// the calling thread) and all their threads inherit d. The thread's own
// slack is put back before it runs anything else. d must be positive.
func With(d time.Duration, start func() error) error {
	if d <= 0 {
		return fmt.Errorf("timer slack %v: want a positive duration", d)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	was, err := Get() // the lock nests: the same thread
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack %v: %w", d, err)
	}
	defer func() {
		// Setting a value the thread had cannot fail; if it did, the
		// thread would keep d, which only delays its own timers.
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(was.Nanoseconds()), 0, 0, 0)
	}()
	return start()
}

// Apply runs start under With(d, start) if d is positive, else as it is:
// the process start keeps the calling thread's slack.
func Apply(d time.Duration, start func() error) error {
	if d <= 0 {
		return start()
	}
	return With(d, start)
}

// Exec replaces the process with argv0 (see syscall.Exec), execed from a
// thread whose timer slack is d: the new image's first thread keeps it, and
// every thread its runtime makes inherits it. It returns only on failure,
// with the calling thread's slack as it was.
func Exec(d time.Duration, argv0 string, argv, env []string) error {
	return With(d, func() error {
		if err := syscall.Exec(argv0, argv, env); err != nil {
			return fmt.Errorf("exec %s with timer slack %v: %w", argv0, d, err)
		}
		return nil // not reached
	})
}
