package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"golang.org/x/sys/unix"
)

// ErrAlreadyRunning is matched (errors.Is) when another shim holds the
// LAG's lock in this run directory (this container).
var ErrAlreadyRunning = errors.New("another teamd-shim runs this LAG")

// ErrFenced is matched when the record directory shows a newer epoch for
// the LAG than this shim's: another container has taken it over.
var ErrFenced = errors.New("fenced by a newer epoch")

// teamd has no change notification, so the shim polls its control socket:
// every answerPoll until it answers at all (teammgrd waits on that), then
// every readyPoll until every member hears the partner, which takes a fast
// period or more anyway; a StateDump is a JSON render in teamd, and 64
// standbys polling it fast would starve the running LAGs of CPU.
const (
	answerPoll = 20 * time.Millisecond
	readyPoll  = 250 * time.Millisecond
)

// callTimeout bounds one control-socket call.
const callTimeout = time.Second

// Shim wraps one teamd process. Create it with New; Run runs it once.
type Shim struct {
	opts    Options
	log     *slog.Logger
	argv    teamd.Args // teamd's options as given
	lag     string
	digest  string
	dumpDir string // -L
	dir     *statefile.Dir

	// Owned by Run's goroutine.
	state   State
	teamd   *teamdProc
	sigs    chan os.Signal
	role    proto.Role // as started: the branch taken once teamd answers
	epoch   uint64
	path    proto.Path    // how this shim became active
	prev    *proto.Active // the LAG's .active found at start
	members []string      // teamd's ports when it last answered
	sb      *standbyWait  // while waiting-ready, standby and taking over
}

// New checks the options and teamd's command line.
func New(opts Options) (*Shim, error) {
	opts.defaults()
	if len(opts.Teamd) == 0 {
		return nil, errors.New("no teamd command line")
	}
	a, err := teamd.ParseArgs(opts.Teamd[1:])
	if err != nil {
		return nil, fmt.Errorf("teamd command line: %w", err)
	}
	lag, ok := a.Value("t")
	if !ok || !proto.ValidLAGName(lag) {
		return nil, fmt.Errorf("teamd command line: -t %q: want the LAG's device name (1-15 of A-Z a-z 0-9 _ . -)", lag)
	}
	config, err := configOf(a)
	if err != nil {
		return nil, err
	}
	digest, err := ConfigDigest(config)
	if err != nil {
		return nil, err
	}
	if opts.Role == proto.RoleStandby && opts.Epoch < 2 {
		return nil, fmt.Errorf("a standby needs an epoch of 2 or more (--epoch or %s), got %d", proto.EnvEpoch, opts.Epoch)
	}
	dumpDir, _ := a.Value("L")
	return &Shim{
		opts: opts, argv: a, lag: lag, digest: digest, dumpDir: dumpDir,
		log: opts.Logger.With("lag", lag),
	}, nil
}

// configOf returns teamd's JSON config from -c or the file -f names.
func configOf(a teamd.Args) ([]byte, error) {
	if c, ok := a.Value("c"); ok {
		return []byte(c), nil
	}
	if f, ok := a.Value("f"); ok {
		b, err := statefile.ReadBounded(f)
		if err != nil {
			return nil, fmt.Errorf("teamd config: %w", err)
		}
		return b, nil
	}
	return nil, errors.New("teamd command line: no config (-c JSON or -f FILE)")
}

// LAG is the team device the shim runs teamd for.
func (s *Shim) LAG() string { return s.lag }

// Run starts teamd and plays the shim's role until teamd exits or the LAG
// has been handed over. It returns the process exit code: teamd's, or 0
// after a handoff. Cancelling ctx stops teamd as SIGTERM would. An error
// is an *Error naming the state and the event it failed in.
func (s *Shim) Run(ctx context.Context) (int, error) {
	unlock, err := lockLAG(s.opts.RunDir, s.lag)
	if err != nil {
		return 1, s.fail(EventStart, err)
	}
	defer unlock()
	if s.dir, err = statefile.OpenDir(s.opts.Dir); err != nil {
		return 1, s.fail(EventStart, err)
	}
	if err := s.chooseRole(); err != nil {
		return 1, s.fail(EventStart, err)
	}
	// Signals first, then the child: a signal in between is not lost.
	s.sigs = make(chan os.Signal, 8)
	signal.Notify(s.sigs, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(s.sigs)

	teamdArgs := s.argv.Without("d")
	if s.role == proto.RoleStandby {
		teamdArgs = teamdArgs.With("w")
	}
	argv := append([]string{s.opts.Teamd[0]}, teamdArgs.Argv()...)
	if s.teamd, err = startTeamd(argv, teamd.SocketPath(s.opts.RunDir, s.lag)); err != nil {
		return 1, s.fail(EventStart, err)
	}
	if err := s.enter(StateStarting, EventStart); err != nil {
		return s.finish(EventStart, err)
	}
	s.log.Info("teamd started", "pid", s.teamd.pid(), "role", s.role, "epoch", s.epoch, "argv", argv)
	defer s.sb.close()
	return s.loop(ctx)
}

// loop is the state machine: one goroutine, one select over everything
// that can happen to the shim; each case acts by the current state.
func (s *Shim) loop(ctx context.Context) (int, error) {
	// teamd has no change notification: the shim polls its control socket
	// while it waits for teamd to answer, and then to be ready.
	poll := time.NewTicker(answerPoll)
	defer poll.Stop()
	var lastAnswerErr error
	stop := ctx.Done()
	for {
		var events <-chan statefile.Event
		var deadline <-chan time.Time
		if s.sb != nil {
			events, deadline = s.sb.events, s.sb.deadline
		}
		select {
		case <-s.teamd.done:
			if s.state == StateStarting {
				return s.finish(EventTeamdExited, fmt.Errorf("teamd exited (%s) before its control socket answered: %w", s.teamd.describe(), lastAnswerErr))
			}
			return s.finish(EventTeamdExited, nil)

		case <-stop:
			stop = nil // once: then teamd's exit ends the loop
			s.relay(syscall.SIGTERM)

		case sig := <-s.sigs:
			if sig != syscall.SIGUSR1 || s.state != StateActive {
				s.relay(sig.(syscall.Signal))
				continue
			}
			if err := s.handOver(ctx); err != nil {
				return 1, err
			}
			return 0, nil

		case <-poll.C:
			st, err := s.teamd.stateDump(ctx, callTimeout)
			switch {
			case s.state == StateStarting && err != nil:
				lastAnswerErr = err
			case s.state == StateStarting:
				if err := s.answered(st); err != nil {
					return s.finish(EventAnswered, err)
				}
				if s.state == StateWaitingReady {
					poll.Reset(readyPoll)
				} else {
					poll.Stop()
				}
			case s.state == StateWaitingReady && err == nil && s.ready(st):
				poll.Stop()
				if err := s.announce(ctx, st); err != nil {
					return s.finish(EventReady, err)
				}
			}

		case ev, ok := <-events:
			if !ok {
				return s.finish(EventSnapshot, fmt.Errorf("watching %s ended", s.dir.Path()))
			}
			if err := s.record(ev); err != nil {
				return s.finish(EventSnapshot, err)
			}

		case <-deadline:
			if err := s.deadline(); err != nil {
				return s.finish(EventDeadline, err)
			}
		}
	}
}

// answered is the end of starting: teamd's control socket answers (the
// moment teamd -d returns to its caller). A standby now waits for teamd
// to be ready; an active shim is the LAG's speaker.
func (s *Shim) answered(st *teamd.State) error {
	s.members = st.PortNames()
	if s.opts.Ready != nil {
		s.opts.Ready()
	}
	if s.role == proto.RoleStandby {
		s.log.Info("standby: waiting for teamd to hear the partner on every member")
		return s.enter(StateWaitingReady, EventAnswered)
	}
	return s.becomeActive()
}

// finish ends the shim on ev: it stops teamd if it still runs, withdraws
// a standby record that never led to a takeover, and returns teamd's exit
// code, or 1 and err as an *Error.
func (s *Shim) finish(ev Event, err error) (int, error) {
	if err != nil {
		err = s.fail(ev, err)
	}
	if !s.teamd.exited() {
		_ = s.teamd.signal(syscall.SIGTERM)
		s.teamd.stop(s.opts.StopTimeout, "did not exit on SIGTERM")
	}
	if s.role == proto.RoleStandby && s.state != StateActive {
		if rerr := s.dir.Remove(s.lag, proto.KindStandby); rerr != nil {
			s.log.Warn("removing the standby record", "err", rerr)
		}
	}
	if terr := s.enter(StateDone, ev); terr != nil && err == nil {
		err = s.fail(ev, terr)
	}
	if err != nil {
		return 1, err
	}
	code := s.teamd.exitCode()
	s.log.Info("teamd exited", "status", s.teamd.describe())
	return code, nil
}

// chooseRole applies the epoch rules of the package doc to what the
// record directory holds.
func (s *Shim) chooseRole() error {
	s.role, s.epoch = s.opts.Role, s.opts.Epoch
	rec, err := s.dir.Read(s.lag, proto.KindActive)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		s.log.Warn("ignoring the LAG's unreadable active record", "err", err)
	default:
		s.prev = rec.(*proto.Active)
	}
	prevEpoch := uint64(0)
	if s.prev != nil {
		prevEpoch = s.prev.Epoch
	}
	if s.role == proto.RoleActive && s.epoch == 0 {
		s.epoch = max(prevEpoch, 1)
	}
	switch {
	case prevEpoch > s.epoch:
		return fmt.Errorf("%s: %s holds epoch %d, this shim has epoch %d: %w",
			s.lag, s.dir.File(s.lag, proto.KindActive), prevEpoch, s.epoch, ErrFenced)
	case prevEpoch == s.epoch:
		// This epoch was the LAG's speaker already: the container restarted.
		s.role, s.path = proto.RoleActive, proto.PathRestart
	case s.argv.Has("w"):
		s.path = proto.PathWarmStart
	default:
		s.path = proto.PathCold
	}
	return nil
}

// relay passes a stop signal on to teamd. SIGUSR1 is the shim's own and is
// handled in state active; in any other state it is ignored.
func (s *Shim) relay(sig syscall.Signal) {
	if sig == syscall.SIGUSR1 {
		s.log.Warn("SIGUSR1 ignored: only an active shim hands over", "state", s.state)
		return
	}
	s.log.Info("relaying signal to teamd", "signal", sig)
	if err := s.teamd.signal(sig); err != nil && !errors.Is(err, errExited) {
		s.log.Error("relaying signal", "err", err)
	}
}

// becomeActive finishes an active start: a warm start (-w) is told to take
// over at once, and the .active record is written.
func (s *Shim) becomeActive() error {
	var t proto.Timings
	if s.argv.Has("w") {
		// The HLD's teamd is passive under -w; an active start with -w is a
		// system warm reboot (or a restart of one), where teamd reads its
		// dump files and goes.
		t.SignalSent = monoclock.Now()
		if err := s.teamd.signal(s.opts.TakeoverSignal); err != nil {
			return fmt.Errorf("warm start: %w", err)
		}
	}
	if err := s.writeActive(s.path, 0, t, ""); err != nil {
		return err
	}
	return s.enter(StateActive, EventAnswered)
}

func (s *Shim) writeActive(path proto.Path, from uint64, t proto.Timings, note string) error {
	s.path = path
	rec := &proto.Active{
		Schema: proto.SchemaVersion, LAG: s.lag, Epoch: s.epoch, Writer: s.writer(), ConfigDigest: s.digest,
		Path: path, SinceMono: monoclock.Now(), Since: time.Now(), FromEpoch: from, Timings: t, Note: note,
		Members: s.members,
	}
	if _, err := s.dir.Write(rec); err != nil {
		return fmt.Errorf("active record: %w", err)
	}
	s.log.Info("active", "epoch", s.epoch, "path", path, "members", len(s.members))
	return nil
}

func (s *Shim) writer() proto.Process {
	host, _ := os.Hostname()
	return proto.Process{Container: s.opts.Container, Hostname: host, PID: os.Getpid()}
}

// PIDFile is the shim's pid file for lag in runDir. It is also the lock
// that keeps a second shim for the LAG out of this container, and where an
// operator finds the process to send SIGUSR1 to.
func PIDFile(runDir, lag string) string { return filepath.Join(runDir, lag+".shim.pid") }

// lockLAG takes the LAG's lock for the life of the process and writes the
// pid into it: two teamd for one device would step on each other's socket
// and pid file.
func lockLAG(runDir, lag string) (unlock func(), err error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	path := PIDFile(runDir, lag)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s (lock %s is held): %w", lag, path, ErrAlreadyRunning)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	return func() { os.Remove(path); f.Close() }, nil
}
