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
// for images that ship no libteam teamdctl: "teamdctl [-o] TEAM state
// dump" prints teamd's StateDump JSON as libteam's does (-o: on one line,
// as libteam's --oneline). The run directory is $TEAMDWARM_RUN_DIR, else
// teamd's default.
func teamdctlCmd(args []string, io cli.IO) error {
	const synopsis = "teamdctl [-o] TEAM state [dump]"
	oneLine := false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-o", "--oneline":
			oneLine = true
		case "-U", "--force-usock": // the socket is all there is
		default:
			return cli.Usagef("option %s is not implemented here (only -o and -U are)", args[0])
		}
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
	if oneLine {
		b, err := teamd.OneLine([]byte(out))
		if err != nil {
			return fmt.Errorf("teamd's state dump is not JSON: %w", err)
		}
		out = string(b) + "\n"
	}
	_, err = fmt.Fprint(io.Stdout, out)
	return err
}
