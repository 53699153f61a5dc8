// Command teamdsim is the test bed's teamd stand-in; see
// integration/teamdsim. Install it as /usr/bin/teamd in test images.
package main

import (
	"os"
	"runtime"

	"github.com/teamdwarm/teamdwarm/integration/teamdsim"
)

func main() {
	// teamd is one thread around an event loop: so is its stand-in, so
	// that the bed's CPU figures are not a Go runtime's with a thread
	// waking per core. GOMAXPROCS in the environment still wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(teamdsim.Main(os.Args[1:], os.Stderr))
}
