package shimcmd

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// teamdctlCmd is the one teamdctl command teamd-warm runs in a container,
// for images that ship no libteam teamdctl: "teamdctl TEAM state dump"
// prints teamd's StateDump JSON as libteam's does. The run directory is
// $TEAMDWARM_RUN_DIR, else teamd's default.
func teamdctlCmd(args []string, io cli.IO) error {
	const synopsis = "teamdctl TEAM state [dump]"
	if len(args) > 0 && args[0] == "-o" { // libteam's "force D-Bus off": the socket is all there is
		args = args[1:]
	}
	if len(args) < 2 || args[1] != "state" || len(args) > 3 || (len(args) == 3 && args[2] != "dump") {
		return cli.Usagef("only %q is implemented here (got %q)", synopsis, strings.Join(args, " "))
	}
	c := teamd.NewClient(teamd.SocketPath(os.Getenv(proto.EnvRunDir), args[0]))
	out, err := c.Call(context.Background(), teamd.MethodStateDump)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(io.Stdout, out)
	return err
}
