package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// errNoCutover holds a snapshot back until the cutover it belongs to is
// seen: a snapshot is only trusted if it was taken after the cutover or
// after this standby was ready (the old shim handed over on its own, its
// container stopped, with or without a cutover coming after). One taken
// before both is a leftover.
var errNoCutover = errors.New("no cutover for this epoch yet")

// Paces of a standby's look at the old speaker: while it waits (is the
// LAG's speaker still there?) at most every standbyCheck, and no sooner
// than the wire could have been quiet for long enough to tell (nextLook);
// past its deadline (is it silent yet?) every deadlineCheck.
const (
	standbyCheck  = 250 * time.Millisecond
	deadlineCheck = 100 * time.Millisecond
)

// watchedKinds are the kinds of its LAG's records (and the directory-wide
// cutover) that a shim started as role reads from its watch: a standby's
// (see mine in announce), which include an active shim's (myActive,
// the fence). init subscribes each shim to these alone; the names of the
// others (its own .standby, the next epoch's, the snapshot an active shim
// writes itself) woke it for nothing.
func watchedKinds(role proto.Role) []proto.Kind {
	if role == proto.RoleStandby {
		return []proto.Kind{proto.KindCutover, proto.KindSnapshot, proto.KindActive}
	}
	return []proto.Kind{proto.KindActive}
}

// standbyWait is what a standby shim keeps from the moment it is ready to
// its takeover. Owned by Run's goroutine.
type standbyWait struct {
	events    <-chan statefile.Event // this LAG's snapshots and .active, and the cutover
	stopWatch context.CancelFunc
	shared    bool             // events come through init's shared watch
	deadline  <-chan time.Time // armed by the cutover
	look      *time.Timer      // the next look at the old speaker (nextLook)
	cut       *proto.Cutover
	late      bool             // the deadline has passed
	pending   *statefile.Event // a snapshot seen before its cutover
	rejected  []string         // why snapshots were refused, for .active's note
	timings   proto.Timings
	confirm   *outgoing // watches the members' outgoing PDUs
	// fencing: the watch has become the fence watch (takeOver), whose
	// filter then keeps the LAG's .active alone: the cutover and the
	// shim's own snapshot would each be read and decoded for nothing.
	// Read by the watch's goroutine.
	fencing *atomic.Bool

	readyMono     int64
	watchSince    time.Time     // the outgoing watch began
	lastOut       time.Time     // the last PDU out, as of the last look (or watchSince)
	lookSpread    time.Duration // this standby's share of nextLook's spread
	ifindexes     map[int]bool  // the members'
	proof         time.Duration // silenceProof
	waitLogged    bool          // "the old teamd still transmits" was said
	quietLooks    int           // looks in a row that found the old speaker gone after the cutover
	socketsLogged bool
}

// close releases the watch and the sockets; nil is fine.
func (w *standbyWait) close() {
	if w == nil {
		return
	}
	if w.stopWatch != nil {
		w.stopWatch()
	}
	if w.look != nil {
		w.look.Stop()
	}
	if w.confirm != nil {
		w.confirm.close()
	}
}

// ready: every member of teamd hears the partner, and every member the old
// speaker announced is there.
func (s *Shim) ready(st *teamd.State) bool {
	if len(st.Ports) == 0 {
		return false
	}
	for _, p := range st.Ports {
		if p.Runner.State != "current" {
			return false
		}
	}
	if s.prev != nil {
		for _, m := range s.prev.Members {
			if _, ok := st.Ports[m]; !ok {
				return false
			}
		}
	}
	return true
}

// announce is waiting-ready's end: the sockets that will confirm the
// takeover are opened (before any signal, so that teamd's first PDU cannot
// slip past), .standby is written, and this LAG's records are watched.
func (s *Shim) announce(ctx context.Context, st *teamd.State) error {
	s.members = st.PortNames()
	w := &standbyWait{confirm: s.takeHearing(), watchSince: time.Now(), ifindexes: map[int]bool{},
		proof: silenceProof(st), look: time.NewTimer(standbyCheck), lookSpread: rand.N(standbyCheck)}
	w.lastOut = w.watchSince
	// Ready, it needs the members' PDUs only at its looks, and teamd's
	// first at the takeover (which reads on as they come).
	w.confirm.pause()
	for _, p := range st.Ports {
		w.ifindexes[p.IfInfo.Ifindex] = true
	}
	s.sb = w
	// Watching first: once .standby is there, a cutover cannot be missed.
	// The LAG's .active too: once this shim is active, the same watch
	// fences it (see fenceWatch).
	fencing, me, kinds := new(atomic.Bool), s.lag, watchedKinds(proto.RoleStandby)
	w.fencing = fencing
	mine := func(lag string, k proto.Kind) bool {
		if fencing.Load() {
			return lag == me && k == proto.KindActive
		}
		return (lag == "" || lag == me) && slices.Contains(kinds, k)
	}
	watchCtx, stop := context.WithCancel(ctx)
	s.sb.stopWatch = stop
	var events <-chan statefile.Event
	var err error
	if w := s.opts.Watch; w != nil {
		s.opts.Watch = nil // the watch owns it now
		events, err = statefile.WatchShared(watchCtx, s.dir.Path(), w, mine)
		s.sb.shared = true
	} else {
		events, err = statefile.WatchOnly(watchCtx, s.dir.Path(), mine)
	}
	if err != nil {
		return err
	}
	s.sb.events = events
	if err := s.writeStandby(st); err != nil {
		return err
	}
	return s.enter(StateStandby, EventReady)
}

func (s *Shim) writeStandby(st *teamd.State) error {
	rec := &proto.Standby{
		Schema: proto.SchemaVersion, LAG: s.lag, Epoch: s.epoch, Writer: s.writer(), ConfigDigest: s.digest,
		ReadyMono: monoclock.Now(), Ready: time.Now(), Teamd: s.info,
	}
	for _, name := range s.members {
		p := st.Ports[name]
		partner, _ := p.Runner.PartnerLACPDUInfo.Info()
		rec.Members = append(rec.Members, proto.StandbyMember{Name: name, State: p.Runner.State, Partner: partner})
	}
	// Published, not written durably: only live processes wait for it (the
	// supervisor, the old shim), and none outlives the host. Nor does it
	// get disk blocks if the takeover removes it within the kernel's
	// writeback delay.
	path, err := s.dir.Publish(rec)
	if err != nil {
		return fmt.Errorf("standby record: %w", err)
	}
	// Only a shim of this epoch writes its .standby, and only one runs: the
	// file is this one until this shim removes it.
	s.standby, _ = statefile.VersionOf(path)
	s.sb.readyMono = rec.ReadyMono
	s.reserve(2)
	s.log.Info("standby: ready", "epoch", s.epoch, "members", len(s.members))
	return nil
}

// record handles one record event of a standby: the cutover arms the
// deadline (and releases a snapshot that came before it); a valid snapshot
// starts the takeover; anything else is logged and kept for the note.
func (s *Shim) record(ev statefile.Event) error {
	w := s.sb
	switch {
	case ev.Name == "" && ev.Err != nil:
		s.log.Warn("record watch", "err", ev.Err)
		return nil
	case ev.Removed:
		return nil
	case ev.Kind == proto.KindCutover:
		c, err := s.judgeCutover(ev)
		if err != nil {
			s.log.Warn("cutover ignored", "reason", err)
			return nil
		}
		w.cut, w.timings.CutoverSeen = c, monoclock.Now()
		// The old shim waits for its wave and then up to a period for its
		// teamd's next PDU before it stops it (awaitRound): the budget
		// starts that much later.
		wave := c.Wave(s.lag)
		at := min(c.DeadlineMono, c.StartedMono+int64(s.opts.Budget)) + int64(wave+1)*int64(alignPeriod(w.proof))
		wait := time.Duration(at - w.timings.CutoverSeen)
		s.log.Info("cutover", "from_epoch", c.FromEpoch, "wave", wave, "deadline_in", wait)
		w.deadline = time.After(wait)
		w.look.Reset(s.nextLook(time.Now())) // the looks go by the cutover's rules now
		if w.pending == nil {
			return nil
		}
		ev, w.pending = *w.pending, nil
	case ev.Kind != proto.KindSnapshot || ev.LAG != s.lag:
		return nil
	}
	seen := monoclock.Now()
	err := s.judgeSnapshot(ev, w.cut)
	note := ""
	if errors.Is(err, errNoCutover) {
		if snap := ev.Record.(*proto.Snapshot); snap.TakenMono <= w.readyMono {
			w.pending = &ev
			return nil
		}
		// The old shim handed over with no cutover (its container was
		// stopped while this standby was ready): the snapshot is as good
		// a proof of its silence.
		err, note = nil, "no cutover: the old shim handed over on its own ("+ev.Record.(*proto.Snapshot).TeamdStop+")"
	}
	if err != nil {
		s.log.Warn("snapshot rejected", "file", ev.Path, "reason", err)
		w.rejected = append(w.rejected, err.Error())
		return nil
	}
	snap := ev.Record.(*proto.Snapshot)
	if w.cut != nil && snap.TakenMono < w.cut.StartedMono {
		note = "the old shim handed over on its own just before the cutover (" + snap.TeamdStop + ")"
	}
	w.timings.SnapshotSeen = seen
	return s.takeOver(EventSnapshot, proto.PathSnapshot, snap.Epoch, note)
}

// deadline: the cutover's budget is spent without a valid snapshot. The
// standby takes over once the old speaker is proven silent (speaker.go),
// at once if it is, or on a later look; an old speaker that still
// transmits keeps the LAG (the supervisor may not have told it to stop),
// and the wait is said once. With no evidence to be had at all, it takes
// over at the deadline, as a shim without the evidence would.
func (s *Shim) deadline() error {
	w := s.sb
	if !w.late {
		w.late = true
		w.look.Reset(deadlineCheck)
	}
	ev := s.gather(w.proof / 3)
	silent, why := ev.silent(w.proof)
	if !silent && ev.known() {
		if !w.waitLogged {
			w.waitLogged = true
			s.log.Warn("deadline passed, but the old speaker is not silent: waiting for it to stop (never two speakers)", "evidence", why)
		}
		return nil
	}
	note := "no snapshot before the deadline"
	if len(w.rejected) > 0 {
		note = "snapshots rejected: " + strings.Join(w.rejected, "; ")
	}
	note += "; " + why
	s.log.Warn("deadline: taking over without a snapshot", "why", note)
	return s.takeOver(EventDeadline, proto.PathDeadline, 0, note)
}

// look is the standby's periodic look at the old speaker: past the
// deadline, whether it is silent yet; before any cutover, whether it died
// or fell silent, which leaves the LAG to expire at the peer unless this
// standby takes over (failover). Without evidence a standby never fails
// over.
func (s *Shim) look() error {
	w := s.sb
	if w.late {
		return s.deadline()
	}
	if w.cut != nil {
		// Told to stop, the old speaker may freeze instead (its container
		// paused), or its shim die after its teamd: once the wire has been
		// quiet for the proof, or for a period with the old teamd's
		// sockets gone (its shim would have written the snapshot by
		// then), waiting for the rest of the budget only spends the
		// peer's 3 s.
		//
		// It must be seen on two looks, standbyCheck apart. An old shim
		// stops its teamd right after its PDU round, about a period after
		// the PDU before it, and its snapshot follows in milliseconds: a
		// look then finds a period of quiet and the sockets gone, and a
		// look later the snapshot is there. The first look goes by the
		// wire alone; the sockets are read once a takeover could follow.
		period := w.quietFor()
		socketsAfter := period
		if w.quietLooks == 0 {
			socketsAfter = w.proof
		}
		ev := s.gather(socketsAfter)
		if !ev.watched || ev.quiet < period {
			w.quietLooks = 0
			return nil
		}
		if w.quietLooks++; w.quietLooks < 2 || !(ev.quiet >= w.proof || ev.sockets && ev.foreign == 0) {
			return nil
		}
		return s.deadline()
	}
	ev := s.gather(w.quietFor())
	proof := w.proof
	if ev.sockets && ev.foreign > 0 {
		proof = failoverProof(w.proof)
	}
	if silent, why := ev.silent(proof); silent && ev.known() {
		note := "the old speaker is silent before any cutover: " + why
		s.log.Warn("failover: taking over so that the LAG does not expire", "why", why)
		return s.takeOver(EventFailover, proto.PathFailover, 0, note)
	}
	return nil
}

// quietFor is how long the wire must have been quiet before a look reads
// the packet sockets (gather; speaker.go says why): before the cutover
// three quarters of the proof; after it a period, from the second of the
// looks in a row that found it so (look).
func (w *standbyWait) quietFor() time.Duration {
	if w.cut != nil {
		return w.proof * 2 / 3
	}
	return w.proof * 3 / 4
}

// nextLook is how long until the standby's next look at the old speaker:
// deadlineCheck once the deadline has passed; standbyCheck after a look
// that found the wire quiet (another must confirm it) or if the wire
// cannot be watched; else when the wire could first have been quiet for
// quietFor (and, after the cutover, a PDU due then had its RoundSlack to
// come; before it, quietFor has that slack already), but not sooner than
// standbyCheck. While the old speaker transmits, that is a look a period,
// not four: each look wakes the standby, and at 128 LAGs every waiting
// standby's wakeups add up. Before the cutover, old teamds started
// together transmit in step, and so would their standbys' looks: each
// standby's come up to standbyCheck later (lookSpread), as a ticker's
// would. After it, the looks must not come later than a ticker's did: a
// frozen old speaker is found by them.
func (s *Shim) nextLook(now time.Time) time.Duration {
	w := s.sb
	var due time.Time
	switch {
	case w.late:
		return deadlineCheck
	case w.quietLooks > 0 || !s.wireWatched():
		return standbyCheck
	case w.cut != nil:
		due = w.lastOut.Add(w.quietFor() + lacpsock.RoundSlack)
	default:
		due = w.lastOut.Add(w.quietFor() + w.lookSpread)
	}
	return max(standbyCheck, due.Sub(now))
}

// judgeCutover accepts the supervisor's cutover to this shim's epoch.
func (s *Shim) judgeCutover(ev statefile.Event) (*proto.Cutover, error) {
	if ev.Err != nil {
		return nil, ev.Err
	}
	c := ev.Record.(*proto.Cutover)
	if c.ToEpoch != s.epoch {
		return nil, fmt.Errorf("cutover to epoch %d, this standby has epoch %d", c.ToEpoch, s.epoch)
	}
	if len(c.LAGs) > 0 && !slices.Contains(c.LAGs, s.lag) {
		return nil, fmt.Errorf("cutover does not list %s", s.lag)
	}
	return c, nil
}

// judgeSnapshot says why a snapshot must not drive a takeover, or nil.
func (s *Shim) judgeSnapshot(ev statefile.Event, cut *proto.Cutover) error {
	if ev.Err != nil {
		return fmt.Errorf("unreadable: %w", ev.Err)
	}
	snap := ev.Record.(*proto.Snapshot)
	switch want := s.epoch - 1; {
	case snap.Epoch < want:
		return fmt.Errorf("stale: epoch %d, want %d", snap.Epoch, want)
	case snap.Epoch > want:
		return fmt.Errorf("foreign: epoch %d, want %d", snap.Epoch, want)
	case snap.ConfigDigest != s.digest:
		return fmt.Errorf("config digest %s, this teamd runs %s: the configuration changed", short(snap.ConfigDigest), short(s.digest))
	case cut == nil:
		return errNoCutover
	case snap.TakenMono < cut.StartedMono && snap.TakenMono <= s.sb.readyMono:
		return fmt.Errorf("taken %v before the cutover, before this standby was ready: a leftover", time.Duration(cut.StartedMono-snap.TakenMono))
	}
	var names []string
	for _, m := range snap.Members {
		names = append(names, m.Name)
	}
	teamd.SortNames(names)
	if !slices.Equal(names, s.members) {
		return fmt.Errorf("members %v, this teamd has %v", names, s.members)
	}
	return nil
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// takeOver is taking-over: the takeover signal, the wait for teamd's first
// PDU on every member, .active, and the standby record withdrawn.
func (s *Shim) takeOver(ev Event, path proto.Path, from uint64, note string) error {
	if s.withdrawn {
		s.log.Warn("not taking the LAG over: this standby is stopping", "on", ev)
		return nil
	}
	if err := s.enter(StateTakingOver, ev); err != nil {
		return err
	}
	w := s.sb
	t := &w.timings
	before := s.readKernel()
	t.SignalSent = monoclock.Now()
	sent := time.Now()
	if err := s.teamd.signal(s.opts.TakeoverSignal); err != nil {
		return fmt.Errorf("takeover signal: %w", err)
	}
	if at, err := w.confirm.wait(sent, s.opts.ConfirmTimeout, s.teamd.done); errors.Is(err, errExited) {
		// Nobody speaks for the LAG now: the shim ends (teamd's exit is
		// its), so that init restarts it at once rather than after the
		// confirmation's timeout.
		return fmt.Errorf("taking over: %w", err)
	} else if err != nil {
		s.log.Error("takeover not confirmed", "err", err)
		// Why not, if teamd can say: a PDU on every member proves it
		// transmits, so only an unconfirmed takeover asks.
		if dump, err := s.teamd.stateDump(context.Background(), callTimeout); err == nil && dump.Setup.Passive != nil && *dump.Setup.Passive {
			s.log.Error("teamd is still passive after the takeover signal", "signal", s.opts.TakeoverSignal)
		}
	} else {
		t.Confirmed = t.SignalSent + int64(at.Sub(sent))
	}
	if err := s.writeActive(path, from, *t, note, before); err != nil {
		return err
	}
	if err := s.removeOwnStandby(); err != nil {
		s.log.Warn("removing the standby record", "err", err)
	}
	s.reserve(1) // its own handoff's snapshot: there already after a snapshot takeover
	if w.events != nil && w.shared {
		// The record watch goes on, as the fence watch (one of its own
		// would cost an inotify instance per LAG).
		s.fenceWatch, s.stopFence, w.stopWatch = w.events, w.stopWatch, nil
		w.fencing.Store(true)
	}
	s.sb.close()
	s.sb = nil
	return s.enter(StateActive, EventTransmits)
}

// withdraw is a standby's first answer to SIGTERM: its .standby goes and
// its liveness lock is let go before its teamd stops, which can take a
// while (a whole container stopping on a busy switch). The LAG's old shim
// then knows at once that nobody of this epoch will take the LAG over: if
// its turn to hand over has not come, it keeps the LAG; if it has handed
// over, it takes the LAG back. A standby that withdrew takes nothing over.
func (s *Shim) withdraw() {
	if s.role != proto.RoleStandby || s.state >= StateTakingOver || s.withdrawn {
		return
	}
	s.withdrawn = true
	if err := s.removeOwnStandby(); err != nil {
		s.log.Warn("removing the standby record", "err", err)
	}
	s.live.Release(false)
	s.log.Info("stopping: the standby record and the liveness lock let go before teamd stops", "epoch", s.epoch)
}

// removeOwnStandby removes the LAG's .standby if it is this shim's epoch's
// (another epoch's belongs to another shim): the one it wrote, known by its
// version without a read, or, if it wrote none (a restarted shim that
// fails before it is ready), one of its epoch left by its predecessor.
func (s *Shim) removeOwnStandby() error {
	if s.standby != (statefile.Version{}) {
		_, err := s.dir.RemoveVersion(s.lag, proto.KindStandby, s.standby)
		return err
	}
	if rec, err := s.dir.Read(s.lag, proto.KindStandby); err != nil || rec.RecordEpoch() != s.epoch {
		return nil
	}
	return s.dir.Remove(s.lag, proto.KindStandby)
}
