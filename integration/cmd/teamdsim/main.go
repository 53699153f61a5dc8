// Command teamdsim is the test bed's teamd stand-in; see
// integration/teamdsim. Install it as /usr/bin/teamd in test images.
package main

import (
	"os"

	"github.com/teamdwarm/teamdwarm/integration/teamdsim"
)

func main() { os.Exit(teamdsim.Main(os.Args[1:], os.Stderr)) }
