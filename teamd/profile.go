package teamd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/proto"
)

// Profile is what a teamd program can do for a handoff.
type Profile string

// The profiles.
const (
	// ProfileStock is libteam's teamd as released (Debian's libteam-utils):
	// no warm stop (SIGUSR1 kills it), no passive start. It cannot hand a
	// LAG over without the peer noticing.
	ProfileStock Profile = "stock"
	// ProfileSONiC is the teamd SONiC ships (libteam + SONiC's series):
	// SIGUSR1 is its warm stop (a last PDU, dump files in -L, exit leaving
	// the kernel LAG as it is); -w is its warm start, which is not passive.
	ProfileSONiC Profile = "sonic"
	// ProfileHLD is SONiC's teamd with teamdwarm's series (libteam/): the
	// warm stop, and -P, a passive start beside a running teamd that
	// transmits only on the takeover signal.
	ProfileHLD Profile = "hld"
)

// WarmStop reports whether SIGUSR1 stops this teamd warm.
func (p Profile) WarmStop() bool { return p == ProfileSONiC || p == ProfileHLD }

// PassiveStart reports whether this teamd can start passive (-P) and
// take over on TakeoverSignal.
func (p Profile) PassiveStart() bool { return p == ProfileHLD }

// Valid reports whether p is one of the profiles.
func (p Profile) Valid() bool { return p == ProfileStock || p == ProfileSONiC || p == ProfileHLD }

// What says in words what a teamd of profile p can do.
func (p Profile) What() string {
	switch p {
	case ProfileStock:
		return "stock teamd: no warm stop (SIGUSR1 kills it), no passive start"
	case ProfileSONiC:
		return "SONiC's teamd: warm stop on SIGUSR1, no passive start"
	case ProfileHLD:
		return "teamdwarm's teamd: warm stop on SIGUSR1, passive start (-P), takeover on " + signame.String(TakeoverSignal)
	}
	return "unknown profile " + string(p)
}

// TakeoverSignal ends a passive teamd's standby (ProfileHLD). It is
// SIGRTMIN+1, chosen so that no signal can stop an active teamd by being
// taken for a takeover: not SIGUSR2, which is SONiC teamd's fast-reboot
// stop and would stop the speaker if a takeover were duplicated, late or
// sent by an older shim; not SIGUSR1, TERM, INT, QUIT or HUP, which teamd
// stops or ignores on; and not SIGRTMIN itself (34), which the Go runtime
// does not let a Go program catch (the test stand-in is one). teamdwarm's
// teamd ignores it when it is not passive, so a duplicate is harmless, and
// a shim sends it only to a teamd whose profile is ProfileHLD: a teamd
// without the handler would die of it.
var TakeoverSignal = signame.RTMin + 1

// ErrSignalTaken is matched when a signal asked for as the takeover signal
// already means something to teamd.
var ErrSignalTaken = errors.New("the signal already means something to teamd")

// CheckTakeoverSignal refuses a takeover signal that teamd already acts on.
func CheckTakeoverSignal(sig syscall.Signal) error {
	switch sig {
	case syscall.SIGUSR1:
		return fmt.Errorf("SIGUSR1 is teamd's warm stop: %w", ErrSignalTaken)
	case syscall.SIGUSR2:
		return fmt.Errorf("SIGUSR2 is SONiC teamd's fast-reboot stop, which would stop an active teamd: %w", ErrSignalTaken)
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
		return fmt.Errorf("%s stops teamd: %w", signame.String(sig), ErrSignalTaken)
	case syscall.SIGHUP, syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPIPE:
		return fmt.Errorf("%s has a meaning of its own: %w", signame.String(sig), ErrSignalTaken)
	}
	return nil
}

// probeTimeout bounds each of Probe's two runs of the program.
const probeTimeout = 5 * time.Second

// Probe tells what the teamd at program can do from the options its
// --help lists: SONiC's series adds -L/--lacp-directory (with its warm
// stop and -w), teamdwarm's adds -P/--passive. It also reads --version.
func Probe(ctx context.Context, program string) (*proto.TeamdInfo, error) {
	help, err := probeRun(ctx, program, "--help")
	if err != nil {
		return nil, err
	}
	version, _ := probeRun(ctx, program, "--version")
	return ProbeOutput(program, help, version), nil
}

// ProbeOutput is Probe from what the program printed for --help and
// --version (nil if that failed), however it was run (in a container, by
// docker exec).
func ProbeOutput(program string, help, version []byte) *proto.TeamdInfo {
	info := &proto.TeamdInfo{Program: program, Profile: string(ProfileStock)}
	switch {
	case bytes.Contains(help, []byte("--passive")):
		info.Profile = string(ProfileHLD)
	case bytes.Contains(help, []byte("--lacp-directory")):
		info.Profile = string(ProfileSONiC)
	}
	info.Version, _, _ = strings.Cut(strings.TrimSpace(string(version)), "\n")
	return info
}

func probeRun(ctx context.Context, program, arg string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, arg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("probing teamd: %s %s: %w: %s", program, arg, err, firstLine(out.String()))
	}
	return out.Bytes(), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
