// Command teamd-state inspects teamdwarm's handoff records and SONiC teamd's
// warm-reboot dump files. See internal/cli/statecmd.
package main

import (
	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/internal/cli/statecmd"
)

func main() { cli.Main("teamd-state", statecmd.Run) }
