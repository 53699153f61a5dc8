// Command teamd-shim wraps teamd for the warm handoff of its LAGs; it is a
// teamd container's entrypoint and may be installed as /usr/bin/teamd. See
// internal/cli/shimcmd and teamdshim.
package main

import (
	"os"

	"github.com/teamdwarm/teamdwarm/internal/cli/shimcmd"
)

func main() { os.Exit(shimcmd.Main(os.Args[0], os.Args[1:], os.Stdout, os.Stderr)) }
