// Command teamd-warm upgrades SONiC's teamd container without the LACP
// peers noticing; see package warmcmd.
package main

import (
	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/internal/cli/warmcmd"
)

func main() { cli.Main("teamd-warm", warmcmd.Run) }
