package shimcmd

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// dumpTimeout bounds one LAG's StateDump; dumpParallel, how many are asked
// at once (each is a JSON render in teamd).
const (
	dumpTimeout  = 5 * time.Second
	dumpParallel = 8
)

// dumpCmd is "teamd-shim dump LAG...": every LAG's StateDump from its
// control socket in $TEAMDWARM_RUN_DIR, as one proto.StateDumps JSON
// object. It exits 0 when it could ask; a LAG that does not answer is
// listed under errors.
func dumpCmd(args []string, io cli.IO) error {
	if len(args) == 0 {
		return cli.Usagef("dump: no LAG named\nusage: teamd-shim dump LAG...")
	}
	for _, lag := range args {
		if !proto.ValidLAGName(lag) {
			return cli.Usagef("dump: %q is not a LAG name", lag)
		}
	}
	out := proto.StateDumps{Dumps: map[string]json.RawMessage{}, Errors: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, dumpParallel)
	runDir := os.Getenv(proto.EnvRunDir)
	for _, lag := range args {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), dumpTimeout)
			defer cancel()
			s, err := teamd.NewClient(teamd.SocketPath(runDir, lag)).Call(ctx, teamd.MethodStateDump)
			if err == nil && !json.Valid([]byte(s)) {
				err = errNotJSON
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Errors[lag] = err.Error()
				return
			}
			out.Dumps[lag] = json.RawMessage(s)
		}()
	}
	wg.Wait()
	return json.NewEncoder(io.Stdout).Encode(out)
}

var errNotJSON = errors.New("teamd's state dump is not JSON")
