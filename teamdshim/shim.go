package teamdshim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/internal/sys/ofdlock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamnl"
	"golang.org/x/sys/unix"
)

// ErrAlreadyRunning is matched (errors.Is) when another shim holds the
// LAG's lock in this run directory (this container).
var ErrAlreadyRunning = errors.New("another teamd-shim runs this LAG")

// ErrFenced is matched when the record directory shows a newer epoch for
// the LAG than this shim's: another container has taken it over.
var ErrFenced = errors.New("fenced by a newer epoch")

// teamd has no change notification, so the shim asks its control socket:
// every answerPoll until it answers at all (teammgrd waits on that) and has
// the ports its config lists; then, for a standby, heardSettle after each
// LACPDU the partner sends on a member (what makes teamd's port current),
// with readyFallback between (or readyPoll if the members cannot be
// watched: a StateDump is a JSON render in teamd, and 128 standbys asking
// it often starve the running LAGs of CPU); once active, every memberPoll,
// for the ports teammgrd adds and removes.
const (
	answerPoll    = 20 * time.Millisecond
	heardSettle   = 20 * time.Millisecond
	readyPoll     = 250 * time.Millisecond
	readyFallback = 2 * time.Second
	memberPoll    = 2 * time.Second
)

// Bounds of starting. teamd opens its control socket before it has any
// port: the ports its config lists appear within portWait, or .active is
// written with those it has. A teamd that does not answer within
// socketCheck is looked at (does it listen somewhere else?), and one that
// has not answered within answerTimeout has failed to start.
const (
	portWait      = 10 * time.Second
	socketCheck   = 2 * time.Second
	answerTimeout = 12 * time.Second
	// slowAnswerTimeout bounds a teamd whose socket takes calls but which
	// does not reply to them in time (seen at 128 LAGs starting on two
	// cores): slow is not hung.
	slowAnswerTimeout = time.Minute
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
	dumpDir string   // -L
	ports   []string // the ports teamd's config lists, if any
	dir     *statefile.Dir

	// Owned by Run's goroutine.
	state   State
	teamd   *teamdProc
	sigs    chan os.Signal
	role    proto.Role // as started: the branch taken once teamd answers
	epoch   uint64
	path    proto.Path        // how this shim became active
	prev    *proto.Active     // the LAG's .active found at start
	members []string          // teamd's ports when it last answered
	active  *proto.Active     // the .active this shim wrote last
	sb      *standbyWait      // while waiting-ready, standby and taking over
	hearing *outgoing         // waiting-ready: the members' LACPDUs (see readyPeriod)
	live    *ofdlock.Lock     // the LAG's liveness lock at this epoch
	seen    seenActive        // the LAG's .active as this shim last saw it, for the fence check
	standby statefile.Version // the .standby this shim wrote last; zero if none

	// Found at start.
	info      *proto.TeamdInfo // the wrapped teamd and its profile
	profile   teamd.Profile
	kernel    *teamnl.Conn // nil if the kernel cannot be read (kernelErr)
	kernelErr error

	handedOver bool // the LAG went to the next epoch: the liveness lock file goes too
	// restartPassive: a restart (path restart) of a teamd that can start
	// passive: it listens until it hears the partner, then takes over, so
	// that its first PDU is in sync and the kernel's LAG is left alone.
	restartPassive bool
	// pendingHandOver: SIGUSR1 came before teamd was the LAG's speaker (a
	// shim restarted during the handoff); it hands over once it is.
	pendingHandOver bool
	lastDump        *teamd.State // an active teamd's last StateDump, for a snapshot if it dies
	// fenceWatch: while active, the LAG's .active as it changes (init's
	// shared watch), so that a newer epoch's takeover fences this shim at
	// once rather than at its next member poll; nil without a shared
	// watch.
	fenceWatch <-chan statefile.Event
	stopFence  context.CancelFunc
	// takeBack: this shim handed the LAG to the next epoch and every shim
	// of it went away before one took over; Run runs again, taking back.
	// takingBack: this run is that (teamd warm-starts from the dump files
	// the handoff just wrote, and transmits at once).
	takeBack, takingBack bool
	noReserve            bool // record files could not be reserved: said once
	// withdrawn: a standby told to stop let its record and lock go at
	// once (withdraw); it takes nothing over after that.
	withdrawn bool
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
	ports, err := configPorts(config)
	if err != nil {
		return nil, err
	}
	dumpDir, _ := a.Value("L")
	return &Shim{
		opts: opts, argv: a, lag: lag, digest: digest, dumpDir: dumpDir, ports: ports,
		log: opts.Logger.With("lag", lag),
	}, nil
}

// configPorts lists the ports a teamd config names ("ports": teamd adds
// them itself; teammgrd's configs name none and add them with teamdctl).
func configPorts(config []byte) ([]string, error) {
	var c struct {
		Ports map[string]json.RawMessage `json:"ports"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("teamd config: %w", err)
	}
	return teamd.SortNames(slices.Collect(maps.Keys(c.Ports))), nil
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

// maxTakeBacks bounds how often one shim takes its LAG back.
const maxTakeBacks = 3

// Run starts teamd and plays the shim's role until teamd exits or the LAG
// has been handed over. It returns the process exit code: teamd's, or 0
// after a handoff. Cancelling ctx stops teamd as SIGTERM would. An error
// is an *Error naming the state and the event it failed in.
//
// A LAG handed over to a next epoch whose every shim went away before
// taking it over (its container stopped at the cutover) is taken back: Run
// runs again, warm-starting teamd from the dump files the handoff wrote.
//
// Run is a process's main: it keeps SIGUSR1, SIGTERM, SIGINT, SIGQUIT and
// SIGHUP from their default action once it returns, for the process to
// exit.
func (s *Shim) Run(ctx context.Context) (int, error) {
	for n := 0; ; n++ {
		if n > 0 {
			*s = Shim{opts: s.opts, log: s.log, argv: s.argv, lag: s.lag, digest: s.digest, dumpDir: s.dumpDir, ports: s.ports, sigs: s.sigs, takingBack: true}
			s.log.Warn("taking the LAG back: the next epoch's shims went away before one took it over")
		}
		code, err := s.run(ctx)
		if s.takingBack && errors.Is(err, ErrFenced) {
			s.log.Info("the LAG was taken over after all; not taking it back")
			return 0, nil
		}
		if !s.takeBack || err != nil || ctx.Err() != nil || n == maxTakeBacks {
			return code, err
		}
	}
}

// run is one start of teamd.
func (s *Shim) run(ctx context.Context) (int, error) {
	// Signals first, before anything that takes time, and before the
	// child: a signal in between is not lost but waits in the channel. A
	// shim init restarts may be sent its handoff's SIGUSR1 within
	// milliseconds of its start, and Go drops a SIGUSR1 nobody is
	// notified of. One channel for Run's life, take-backs included, never
	// stopped (see Run): signal.Stop is a round trip per signal with the
	// runtime's signal-mask thread, about 0.1 ms of an old shim's exit in
	// every handoff.
	if s.sigs == nil {
		s.sigs = make(chan os.Signal, 8)
		signal.Notify(s.sigs, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	}
	unlock, err := lockLAG(s.opts.RunDir, s.lag)
	if err != nil {
		return 1, s.fail(EventStart, err)
	}
	defer unlock()
	if s.dir, err = statefile.OpenDir(s.opts.Dir); err != nil {
		return 1, s.fail(EventStart, err)
	}
	defer s.dir.Close()
	if err := s.chooseRole(); err != nil {
		return 1, s.fail(EventStart, err)
	}
	// One shim per LAG and epoch, in any container; the lock also tells
	// the supervisor and the other container's shims that this one lives.
	if s.live, err = s.dir.Live(s.lag, s.epoch, statefile.LiveWho(os.Getpid(), fmt.Sprintf("teamd-shim in %s, %s", s.opts.Container, s.role))); err != nil {
		return 1, s.fail(EventStart, fmt.Errorf("another teamd-shim runs %s at epoch %d: %w", s.lag, s.epoch, err))
	}
	defer func() { s.live.Release(s.handedOver) }()
	if err := s.probe(ctx); err != nil {
		return 1, s.fail(EventStart, err)
	}
	if s.kernel, s.kernelErr = teamnl.Dial(); s.kernelErr != nil {
		s.log.Info("the kernel's view of the LAG cannot be read; records will say why", "err", s.kernelErr)
	} else {
		defer s.kernel.Close()
	}
	// The teamd of a shim of this container that died runs on: adopt it
	// (starting another would fail on its socket and pid file, and
	// killing it would silence the LAG). A stale pid file is removed.
	orphan, err := orphanTeamd(s.opts.RunDir, s.lag)
	if err != nil {
		return 1, s.fail(EventStart, err)
	}
	socket := teamd.SocketPath(s.opts.RunDir, s.lag)
	switch {
	case orphan != 0:
		if s.teamd, err = adoptTeamd(orphan, socket); err != nil {
			return 1, s.fail(EventStart, err)
		}
		s.log.Warn("adopted the running teamd of a shim that died", "pid", orphan, "role", s.role, "epoch", s.epoch)
	case s.role == proto.RoleActive && s.standbyWaiting():
		// This LAG's teamd died with its shim, and a standby of the next
		// epoch is ready: it takes over once it finds the old speaker
		// gone. Starting a teamd here would race it.
		s.log.Warn("no teamd runs and a standby of the next epoch is ready: leaving the LAG to it", "standby_epoch", s.epoch+1)
		return 0, nil
	case s.takingBack && s.successorAlive():
		s.log.Info("a shim of the next epoch runs again: leaving the LAG to it", "standby_epoch", s.epoch+1)
		return 0, nil
	default:
		teamdArgs := s.argv.Without("d")
		s.restartPassive = s.path == proto.PathRestart && s.profile.PassiveStart() && !s.takingBack
		switch {
		case s.takingBack:
			// The handoff left teamd's dump files and the kernel's LAG as
			// they were: SONiC's warm start (-w -o) folds them in and
			// transmits at once, in sync, as after a warm reboot.
			teamdArgs = teamdArgs.Without("r", "P").With("w").With("o")
		case s.role == proto.RoleStandby || s.restartPassive:
			// Passive beside the running teamd (or to relearn the partner
			// after a restart): never recreate the device (-r) nor
			// warm-start (-w, which transmits at once).
			teamdArgs = teamdArgs.Without("r", "w").With("P")
		}
		argv := append([]string{s.opts.Teamd[0]}, teamdArgs.Argv()...)
		if s.teamd, err = startTeamd(argv, socket, s.opts.TeamdTimerSlack); err != nil {
			return 1, s.fail(EventStart, err)
		}
		s.log.Info("teamd started", "pid", s.teamd.pid(), "role", s.role, "epoch", s.epoch, "argv", argv)
	}
	defer s.teamd.close()
	defer func() {
		if s.stopFence != nil {
			s.stopFence()
		}
		if s.hearing != nil {
			s.hearing.close()
			s.hearing = nil
		}
	}()
	if err := s.enter(StateStarting, EventStart); err != nil {
		return s.finish(EventStart, err)
	}
	defer s.sb.close()
	go statefile.Warm() // while teamd starts: the handoff's records are a first in this process
	return s.loop(ctx)
}

// loop is the state machine: one goroutine, one select over everything
// that can happen to the shim; each case acts by the current state.
func (s *Shim) loop(ctx context.Context) (int, error) {
	poll := time.NewTicker(answerPoll)
	defer poll.Stop()
	var st starting
	st.since = time.Now()
	stop := ctx.Done()
	for {
		if s.state == StateActive && s.pendingHandOver {
			s.pendingHandOver = false
			if done, err := s.handOverRequested(ctx); err != nil {
				return 1, err
			} else if done {
				return 0, nil
			}
		}
		var events, fence <-chan statefile.Event
		var deadline, look <-chan time.Time
		var heard <-chan struct{}
		if s.state == StateWaitingReady && s.hearing != nil {
			heard = s.hearing.heard
		}
		if s.sb != nil && s.sb.look != nil {
			events, deadline, look = s.sb.events, s.sb.deadline, s.sb.look.C
		}
		if s.state == StateActive {
			fence = s.fenceWatch
		}
		select {
		case ev, ok := <-fence:
			switch {
			case !ok:
				s.fenceWatch = nil // the member poll still looks
			case ev.Kind == proto.KindActive && ev.LAG == s.lag:
				if s.noteActive(ev); s.fenced() {
					return s.stepDown()
				}
			}

		case <-s.teamd.done:
			// A teamd that exits by itself before it ever answered did not
			// start (its configuration, its run directory): the shim fails,
			// and init does not restart it. One killed (kill -9, the OOM
			// killer) ends the shim as any teamd death does, with teamd's
			// status, so that init restarts it.
			if s.state == StateStarting && st.answered.IsZero() && s.teamd.exitCode() < 128 {
				err := fmt.Errorf("teamd exited (%s) before its control socket answered", s.teamd.describe())
				if st.lastErr != nil {
					err = fmt.Errorf("%w: %w", err, st.lastErr)
				}
				return s.finish(EventTeamdExited, err)
			}
			if s.state == StateActive {
				s.diedSnapshot()
			}
			return s.finish(EventTeamdExited, nil)

		case <-stop:
			stop = nil // once: then teamd's exit ends the loop
			if handed, err := s.stopRequested(ctx); err != nil {
				return 1, err
			} else if handed {
				return 0, nil
			}

		case sig := <-s.sigs:
			switch {
			case sig == syscall.SIGTERM:
				if handed, err := s.stopRequested(ctx); err != nil {
					return 1, err
				} else if handed {
					return 0, nil
				}
			case sig == syscall.SIGUSR1 && s.role == proto.RoleActive && s.state < StateActive:
				s.log.Warn("SIGUSR1 before teamd is the LAG's speaker: handing over as soon as it is", "state", s.state)
				s.pendingHandOver = true
			case sig != syscall.SIGUSR1 || s.state != StateActive:
				s.relay(sig.(syscall.Signal))
			case !s.profile.WarmStop():
				// Handing over by killing teamd would flap the LAG.
				s.log.Error("SIGUSR1 refused: this teamd cannot stop warm, so the LAG stays with it",
					"teamd", s.info.Program, "profile", s.profile, "what", s.profile.What())
			default:
				if done, err := s.handOverRequested(ctx); err != nil {
					return 1, err
				} else if done {
					return 0, nil
				}
			}

		case <-heard:
			// teamd gets the same PDU: ask it once it has taken it in.
			poll.Reset(heardSettle)

		case <-poll.C:
			dump, err := s.teamd.stateDump(ctx, callTimeout)
			if err == nil {
				s.lastDump = dump
			}
			switch s.state {
			case StateStarting:
				next, err := s.starting(&st, dump, err)
				if err != nil {
					return s.finish(EventAnswered, err)
				}
				if next != 0 {
					poll.Reset(next)
				}
			case StateWaitingReady:
				if err == nil && dump.Setup.Passive != nil && !*dump.Setup.Passive {
					// It transmits beside the running teamd: stop it now.
					return s.finish(EventReady, errors.New("teamd says it is not passive (StateDump setup.passive false): a standby must never speak beside the running teamd; stopped"))
				}
				if err == nil && (s.ready(dump) || (s.restartPassive && len(dump.Ports) == 0)) {
					// A passive restart with no port has no partner to
					// hear: it takes over at once.
					if s.restartPassive {
						if err := s.restartTakeOver(dump); err != nil {
							return s.finish(EventReady, err)
						}
						poll.Reset(memberPoll)
						continue
					}
					poll.Stop()
					if err := s.announce(ctx, dump); err != nil {
						return s.finish(EventReady, err)
					}
					continue
				}
				if err == nil && !slices.Equal(dump.PortNames(), s.members) {
					s.members = dump.PortNames() // teamd has its ports now: watch them
					s.listen()
				}
				poll.Reset(s.readyPeriod())
			case StateActive:
				if s.fenced() {
					return s.stepDown()
				}
				if err == nil {
					s.refresh(dump)
				}
			}

		case ev, ok := <-events:
			if !ok {
				return s.finish(EventSnapshot, fmt.Errorf("watching %s ended", s.dir.Path()))
			}
			if err := s.record(ev); err != nil {
				return s.finish(EventSnapshot, err)
			}
			if s.state == StateActive {
				poll.Reset(memberPoll)
			}

		case <-deadline:
			if err := s.deadline(); err != nil {
				return s.finish(EventDeadline, err)
			}
			if s.state == StateActive {
				poll.Reset(memberPoll)
			}

		case <-look:
			if err := s.look(); err != nil {
				return s.finish(EventFailover, err)
			}
			if s.state == StateActive {
				poll.Reset(memberPoll)
			} else if s.sb != nil {
				s.sb.look.Reset(s.nextLook(time.Now()))
			}
		}
	}
}

// handOverRequested answers SIGUSR1 to an active shim over a teamd that
// can stop warm. A standby of the next epoch that runs but is not ready
// (restarted after its teamd died) is waited for, within a bound: the LAG
// is better kept than left silent until it is. If the cutover hands the
// LAG to the next epoch and no shim of it runs at all, the request is
// refused and the LAG kept: nobody would take it over (the supervisor
// sends SIGUSR1 again once one does, and a SIGUSR1 without a cutover, as
// for SONiC's warm reboot, always stops teamd warm). done says the shim
// handed over.
func (s *Shim) handOverRequested(ctx context.Context) (done bool, err error) {
	ready, running := s.awaitStandby(readyStandbyWait)
	cut := s.cutoverToNext()
	toNext := cut != nil
	if !ready && !running && toNext {
		s.log.Error("SIGUSR1 refused: the cutover hands this LAG to the next epoch, but no shim of that epoch runs to take it over; keeping it",
			"epoch", s.epoch, "next", s.epoch+1)
		return false, nil
	}
	if toNext {
		s.awaitRound(cut)
		// The turn can be periods away (a later wave), and the next epoch
		// can go meanwhile (its container stopped at the cutover):
		// stopping teamd then would leave the LAG silent until it is
		// taken back.
		// The lock alone: this is between teamd's PDU and its stop.
		if _, alive, err := s.dir.Alive(s.lag, s.epoch+1); err != nil || !alive {
			s.log.Error("handoff called off at the LAG's turn: no shim of the next epoch runs any more; keeping the LAG",
				"epoch", s.epoch, "next", s.epoch+1)
			return false, nil
		}
	}
	if err := s.handOver(ctx, EventHandOver); err != nil {
		return true, err
	}
	if toNext {
		s.takeBack = s.awaitSuccessor(ctx)
	}
	return true, nil
}

// cutoverToNext returns the directory's cutover record if it hands this
// LAG from this shim's epoch to the next, else nil.
func (s *Shim) cutoverToNext() *proto.Cutover {
	rec, err := s.dir.Read("", proto.KindCutover)
	if err != nil {
		return nil
	}
	c := rec.(*proto.Cutover)
	if c.FromEpoch != s.epoch || (len(c.LAGs) > 0 && !slices.Contains(c.LAGs, s.lag)) {
		return nil
	}
	return c
}

// stopRequested answers SIGTERM (or the context's end, which the
// command's SIGTERM also brings): an active shim whose successor waits
// ready hands the LAG over rather than take it down (the container is
// being stopped during an upgrade); otherwise teamd gets SIGTERM. handed
// says the shim is done.
func (s *Shim) stopRequested(ctx context.Context) (handed bool, err error) {
	if s.state != StateActive || !s.profile.WarmStop() {
		s.withdraw()
		s.relay(syscall.SIGTERM)
		return false, nil
	}
	if ready, _ := s.awaitStandby(readyStandbyWait); ready {
		s.log.Warn("SIGTERM while a standby of the next epoch is ready: handing the LAG over instead of stopping it")
		if err := s.handOver(ctx, EventStopToStandby); err != nil {
			return true, err
		}
		return true, nil
	}
	s.relay(syscall.SIGTERM)
	return false, nil
}

// starting is what the shim learns while teamd starts.
type starting struct {
	since    time.Time // teamd's start
	answered time.Time // its first answer
	lastErr  error     // why it did not answer, last time
	looked   bool      // where it listens was looked at
}

// starting handles one StateDump (or its failure) in state starting. teamd
// answers on its control socket before it has created its ports (libteam
// teamd.c sets the socket up first; the ports come from the kernel's port
// events in its run loop), so an active start waits for the ports the
// config lists. next is the poll period to go on with, 0 for the same.
func (s *Shim) starting(st *starting, dump *teamd.State, err error) (next time.Duration, _ error) {
	if err != nil {
		st.lastErr = err
		if !st.answered.IsZero() {
			return 0, nil
		}
		if !st.looked && time.Since(st.since) >= socketCheck {
			st.looked = true
			if err := s.checkSocket(); err != nil {
				return 0, err
			}
		}
		limit := answerTimeout
		if errors.Is(err, context.DeadlineExceeded) {
			// The socket takes the call but teamd is slow to reply: a
			// busy switch starting all its teamds at once, not a hang.
			limit = slowAnswerTimeout
		}
		if time.Since(st.since) >= limit {
			return 0, fmt.Errorf("teamd (pid %d) has not answered on its control socket %s within %v: %w",
				s.teamd.pid(), s.teamd.client.Path(), limit, err)
		}
		return 0, nil
	}
	if st.answered.IsZero() {
		st.answered = time.Now()
		if s.opts.Ready != nil {
			s.opts.Ready() // what teamd -d returns on
		}
	}
	s.members = dump.PortNames()
	if s.role == proto.RoleStandby && s.teamd.adopted && dump.Setup.Passive != nil && !*dump.Setup.Passive {
		// The adopted teamd took over before its shim died, unrecorded:
		// it is the LAG's speaker.
		s.log.Warn("the adopted teamd is not passive: it took over before its shim died; active now")
		s.role, s.path = proto.RoleActive, proto.PathRestart
		return memberPoll, s.becomeActive()
	}
	if s.role == proto.RoleStandby || s.restartPassive {
		s.log.Info("passive: waiting for teamd to hear the partner on every member", "role", s.role, "path", s.path)
		s.listen()
		return s.readyPeriod(), s.enter(StateWaitingReady, EventAnswered)
	}
	if missing := s.missingPorts(dump); len(missing) > 0 {
		if time.Since(st.answered) < portWait {
			return 0, nil
		}
		s.log.Warn("teamd lacks ports its config lists; the active record has those it has", "missing", missing, "after", portWait)
	}
	return memberPoll, s.becomeActive()
}

// missingPorts lists the config's ports teamd does not have yet.
func (s *Shim) missingPorts(dump *teamd.State) []string {
	var out []string
	for _, p := range s.ports {
		if _, ok := dump.Ports[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// checkSocket looks where teamd listens when it does not answer where the
// shim asks: stock teamd's run directory is compiled in, and a --run-dir
// elsewhere can never work with it.
func (s *Shim) checkSocket() error {
	want := s.teamd.client.Path()
	paths, err := listeningSockets(s.teamd.pid())
	if err != nil {
		s.log.Warn("cannot tell where teamd listens", "err", err)
		return nil
	}
	if len(paths) == 0 || slices.Contains(paths, want) {
		return nil // not listening yet, or about to answer
	}
	return fmt.Errorf("teamd listens on %s, not on %s where this shim asks (--run-dir or %s is %s): this teamd's run directory is compiled in; run the shim with --run-dir %s",
		strings.Join(paths, ", "), want, proto.EnvRunDir, s.opts.RunDir, filepath.Dir(paths[0]))
}

// refresh rewrites .active when teamd's ports change (teammgrd adds and
// removes them with teamdctl while teamd runs) or the kernel's LAG does
// (teamd enables a port once it is collecting and distributing), so that
// the record says how the LAG is, not how it was when teamd started.
func (s *Shim) refresh(dump *teamd.State) {
	now := dump.PortNames()
	if s.active == nil {
		s.members = now
		return
	}
	kernel := s.readKernel()
	membersChanged := !slices.Equal(now, s.members)
	kernelChanged := kernel.Read() != s.active.Kernel.Read() || (kernel.Read() && len(s.active.Kernel.Diff(kernel)) > 0)
	if !membersChanged && !kernelChanged {
		return
	}
	if membersChanged {
		s.log.Info("members changed", "was", s.members, "now", now)
	}
	s.members = now
	a := *s.active
	a.Members, a.Kernel = now, kernel
	if _, err := s.dir.Write(&a); err != nil {
		s.log.Error("rewriting the active record", "err", err)
		return
	}
	s.active = &a
	s.reserve(1) // the handoff's snapshot again
}

// finish ends the shim on ev: it stops teamd if it still runs, withdraws
// a standby record that never led to a takeover, and returns teamd's exit
// code, or 1 and err as an *Error.
func (s *Shim) finish(ev Event, err error) (int, error) {
	if errors.Is(err, errExited) {
		// teamd died under a step: the shim ends as teamd did, so that
		// init restarts a killed one at once.
		s.log.Error("teamd exited", "during", ev, "err", err)
		err = nil
	}
	if err != nil {
		err = s.fail(ev, err)
	}
	if !s.teamd.exited() {
		_ = s.teamd.signal(syscall.SIGTERM)
		s.teamd.stop(s.opts.StopTimeout, "did not exit on SIGTERM")
	}
	if s.role == proto.RoleStandby && s.state != StateActive {
		if rerr := s.removeOwnStandby(); rerr != nil {
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

// listen watches the members' LACPDUs while teamd is not ready, so that
// each partner PDU prompts a look (the loop's heard case).
func (s *Shim) listen() {
	if s.hearing.covers(s.members) {
		return
	}
	if s.hearing != nil {
		s.hearing.close()
	}
	s.hearing = watchOutgoing(s.members, s.log)
}

// readyPeriod is the look at a waiting teamd between partner PDUs: rare
// when every member's PDUs prompt a look, else readyPoll.
func (s *Shim) readyPeriod() time.Duration {
	if len(s.members) > 0 && s.hearing.covers(s.members) {
		return readyFallback
	}
	return readyPoll
}

// takeHearing hands the members' watch over to the takeover's
// confirmation (opened anew if teamd's members are not those watched).
func (s *Shim) takeHearing() *outgoing {
	o := s.hearing
	s.hearing = nil
	if !o.covers(s.members) {
		if o != nil {
			o.close()
		}
		o = watchOutgoing(s.members, s.log)
	}
	return o
}

// myActive keeps the LAG's .active, for the fence watch.
func (s *Shim) myActive(lag string, k proto.Kind) bool { return lag == s.lag && k == proto.KindActive }

// restartTakeOver ends a passive restart: teamd hears the partner on every
// member, so it takes over at once, its first PDU in sync.
func (s *Shim) restartTakeOver(st *teamd.State) error {
	s.members = st.PortNames()
	s.sb = &standbyWait{confirm: s.takeHearing()}
	s.log.Info("restart: teamd hears the partner; taking over")
	return s.takeOver(EventReady, proto.PathRestart, 0, "restarted: teamd started passive and took over once it heard the partner")
}

// becomeActive finishes an active start: the .active record is written.
// A warm start (-w: a system warm reboot, or its restart) needs nothing
// more: teamd reads its dump files and transmits by itself.
func (s *Shim) becomeActive() error {
	var t proto.Timings
	if s.path == proto.PathRestart && s.teamd.adopted && len(s.members) > 0 {
		// The adopted teamd speaks already: the record says so once its
		// PDUs are seen leaving every member.
		o := s.takeHearing()
		since := time.Now()
		if at, err := o.wait(since, s.opts.ConfirmTimeout, s.teamd.done); err == nil {
			t.Confirmed = monoclock.Now() - int64(time.Since(at))
		} else {
			s.log.Warn("the adopted teamd was not seen transmitting", "err", err)
		}
		o.close()
	}
	note := ""
	if s.takingBack {
		note = "taken back: the next epoch's shims went away before one took the LAG over"
	}
	if err := s.writeActive(s.path, 0, t, note, nil); err != nil {
		return err
	}
	s.reserve(1) // the handoff's snapshot
	if w := s.opts.Watch; w != nil {
		s.opts.Watch = nil // the watch owns it now
		ctx, stop := context.WithCancel(context.Background())
		if events, err := statefile.WatchShared(ctx, s.dir.Path(), w, s.myActive); err == nil {
			s.fenceWatch, s.stopFence = events, stop
		} else {
			stop()
		}
	}
	return s.enter(StateActive, EventAnswered)
}

// writeActive writes .active: this shim's teamd is the LAG's speaker.
// kernelBefore is the kernel's LAG just before a takeover, nil otherwise.
func (s *Shim) writeActive(path proto.Path, from uint64, t proto.Timings, note string, kernelBefore *proto.KernelLAG) error {
	s.path = path
	rec := &proto.Active{
		Schema: proto.SchemaVersion, LAG: s.lag, Epoch: s.epoch, Writer: s.writer(), ConfigDigest: s.digest,
		Path: path, SinceMono: monoclock.Now(), Since: time.Now(), FromEpoch: from, Timings: t, Note: note,
		Members: s.members, Teamd: s.info, Kernel: s.readKernel(), KernelBefore: kernelBefore,
	}
	if _, err := s.dir.Write(rec); err != nil {
		return fmt.Errorf("active record: %w", err)
	}
	s.active = rec
	s.log.Info("active", "epoch", s.epoch, "path", path, "members", len(s.members))
	return nil
}

// reserve keeps n record files allocated ahead of the writes to come
// (statefile.Dir.Reserve): an active shim one for its handoff's snapshot, a
// ready standby two, its takeover's .active and then its own snapshot (a
// restarted shim, which takes over once it hears the partner without
// having been a ready standby, reserves the snapshot's after it). Where
// files cannot be reserved, the writes allocate theirs, as they did; that
// is said once.
func (s *Shim) reserve(n int) {
	if err := s.dir.Reserve(n); err != nil && !s.noReserve {
		s.noReserve = true
		s.log.Info("record files cannot be allocated ahead: each write allocates its own", "err", err)
	}
}

// readKernel is the kernel's view of the LAG now, or why it cannot be had.
func (s *Shim) readKernel() *proto.KernelLAG { return teamnl.Read(s.kernel, s.kernelErr, s.lag) }

// probe finds what the wrapped teamd can do and refuses a role it cannot
// play: a standby needs a passive start, for any other teamd would disable
// the ports and transmit beside the running one.
func (s *Shim) probe(ctx context.Context) error {
	info := probedByInit(s.opts.Teamd[0])
	if info == nil {
		var err error
		if info, err = teamd.Probe(ctx, s.opts.Teamd[0]); err != nil {
			return err
		}
	}
	s.info, s.profile = info, teamd.Profile(info.Profile)
	if d := s.opts.TeamdProfile; d != "" && d != s.profile {
		return fmt.Errorf("%s is declared %s (%s), but it is %s", info.Program, d, proto.EnvTeamdProfile, s.profile.What())
	}
	if s.role == proto.RoleStandby && !s.profile.PassiveStart() {
		return fmt.Errorf("a standby needs a teamd that starts passive beside the running one; %s is %s", info.Program, s.profile.What())
	}
	s.log.Info("teamd", "program", info.Program, "version", info.Version, "profile", s.profile)
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
