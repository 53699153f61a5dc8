// Package monoclock reads CLOCK_MONOTONIC as the records store it:
// nanoseconds since boot, shared by every container of a host, so a time one
// process writes can be compared with one another process reads.
package monoclock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now is CLOCK_MONOTONIC in nanoseconds.
func Now() int64 {
	var ts unix.Timespec
	// clock_gettime(CLOCK_MONOTONIC) cannot fail on Linux.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Since is the time elapsed since mono (a Now value).
func Since(mono int64) time.Duration { return time.Duration(Now() - mono) }
