package statefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/teamdwarm/teamdwarm/internal/sys/ofdlock"
	"github.com/teamdwarm/teamdwarm/proto"
)

// ErrLive is matched (errors.Is) when another live process holds the
// liveness lock Live asks for.
var ErrLive = ofdlock.ErrHeld

// Liveness: the shim of a LAG at an epoch holds an open file description
// lock on ".<lag>.<epoch>.live" in the record directory for as long as it
// runs. A record says what its writer did; the lock says whether the writer
// still lives. The kernel drops the lock when the process dies, however it
// dies, and every container that shares the directory sees the same file.
// The names start with '.', so record readers skip them.

// LiveWho is what a holder writes into its liveness lock: its pid (as
// its own pid namespace sees it, the one its records carry) and a few
// words.
func LiveWho(pid int, what string) string { return fmt.Sprintf("pid=%d %s", pid, what) }

// LivePID is the pid LiveWho wrote, 0 if there is none.
func LivePID(who string) int {
	var pid int
	if _, err := fmt.Sscanf(who, "pid=%d", &pid); err != nil {
		return 0
	}
	return pid
}

// LiveFile is the path of lag's liveness lock at epoch.
func (d *Dir) LiveFile(lag string, epoch uint64) string {
	return filepath.Join(d.path, fmt.Sprintf(".%s.%d.live", lag, epoch))
}

// Live takes lag's liveness lock at epoch for the life of the process
// (until Release), writing who into it. A second taker, in any container,
// gets an error matching ErrLive that says who holds it: one shim per LAG
// and epoch.
func (d *Dir) Live(lag string, epoch uint64, who string) (*ofdlock.Lock, error) {
	if !proto.ValidLAGName(lag) || epoch == 0 {
		return nil, fmt.Errorf("liveness lock: bad LAG %q or epoch %d", lag, epoch)
	}
	l, err := ofdlock.Take(d.LiveFile(lag, epoch), who)
	if errors.Is(err, ofdlock.ErrHeld) {
		return nil, fmt.Errorf("%s at epoch %d: %w", lag, epoch, err)
	}
	return l, err
}

// Alive says whether lag's liveness lock at epoch is held, and by whom.
func (d *Dir) Alive(lag string, epoch uint64) (who string, alive bool, err error) {
	return ofdlock.Holder(d.LiveFile(lag, epoch))
}

// LiveLock is one liveness lock file of a directory.
type LiveLock struct {
	LAG   string
	Epoch uint64
	Path  string
	Held  bool
	Who   string // the holder's line, if held
}

// Lives lists the liveness lock files of the directory, held or not.
func (d *Dir) Lives() ([]LiveLock, error) {
	des, err := os.ReadDir(d.path)
	if err != nil {
		return nil, err
	}
	var out []LiveLock
	for _, de := range des {
		lag, epoch, ok := parseLiveName(de.Name())
		if !ok {
			continue
		}
		l := LiveLock{LAG: lag, Epoch: epoch, Path: filepath.Join(d.path, de.Name())}
		l.Who, l.Held, _ = ofdlock.Holder(l.Path)
		out = append(out, l)
	}
	return out, nil
}

// parseLiveName is the inverse of LiveFile's base name.
func parseLiveName(name string) (lag string, epoch uint64, ok bool) {
	rest, ok := strings.CutPrefix(name, ".")
	if !ok {
		return "", 0, false
	}
	rest, ok = strings.CutSuffix(rest, ".live")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", 0, false
	}
	epoch, err := strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil || epoch == 0 || !proto.ValidLAGName(rest[:i]) {
		return "", 0, false
	}
	return rest[:i], epoch, true
}
