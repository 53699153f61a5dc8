// Package signame parses and prints signal names as operators write them:
// "SIGUSR2", "USR2", "12", and the real-time "SIGRTMIN", "SIGRTMIN+3"; and
// it turns a wait status into the exit code a shell shows.
package signame

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// RTMin is SIGRTMIN as a C program on glibc sees it: the kernel's 32, less
// the two glibc keeps for itself. SONiC's teamd is such a program.
const RTMin = syscall.Signal(34)

// Parse reads a signal name or number.
func Parse(s string) (syscall.Signal, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(name); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q: out of range 1..64", s)
		}
		return syscall.Signal(n), nil
	}
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN"); ok {
		off := 0
		if rest != "" {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 || int(RTMin)+n > 64 {
				return 0, fmt.Errorf("signal %q: want SIGRTMIN or SIGRTMIN+n", s)
			}
			off = n
		}
		return RTMin + syscall.Signal(off), nil
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: unknown name", s)
}

// String names a signal the way Parse reads it.
func String(sig syscall.Signal) string {
	if sig >= RTMin && sig <= 64 {
		if sig == RTMin {
			return "SIGRTMIN"
		}
		return fmt.Sprintf("SIGRTMIN+%d", sig-RTMin)
	}
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return strconv.Itoa(int(sig))
}

// ExitCode is a wait status as a shell reports it: the exit status, or
// 128+n for a process killed by signal n.
func ExitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
