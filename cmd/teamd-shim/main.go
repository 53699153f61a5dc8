// Command teamd-shim wraps teamd for the warm handoff of its LAGs; it is a
// teamd container's entrypoint and may be installed as /usr/bin/teamd. See
// internal/cli/shimcmd and teamdshim.
package main

import (
	"os"
	"runtime"

	"github.com/teamdwarm/teamdwarm/internal/cli/shimcmd"
)

func main() {
	// A shim waits on one teamd, a few sockets and files: it has nothing to
	// run in parallel, and a switch runs one per LAG (two during a
	// handoff). With a P per core, every wakeup also wakes a spinning
	// thread to look for work and keeps sysmon polling: one P halves the
	// runtime's nanosleep calls in a handoff and cuts its futex calls by a
	// quarter. GOMAXPROCS in the environment still wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(shimcmd.Main(os.Args[0], os.Args[1:], os.Stdout, os.Stderr))
}
