package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// errNoCutover holds a snapshot back until the cutover it belongs to is
// seen: a snapshot is only trusted if it was taken after the cutover.
var errNoCutover = errors.New("no cutover for this epoch yet")

// standbyWait is what a standby shim keeps from the moment it is ready to
// its takeover. Owned by Run's goroutine.
type standbyWait struct {
	events    <-chan statefile.Event // this LAG's snapshots and the cutover
	stopWatch context.CancelFunc
	deadline  <-chan time.Time // armed by the cutover
	cut       *proto.Cutover
	pending   *statefile.Event // a snapshot seen before its cutover
	rejected  []string         // why snapshots were refused, for .active's note
	timings   proto.Timings
	confirm   *outgoing // watches the members' outgoing PDUs
}

// close releases the watch and the sockets; nil is fine.
func (w *standbyWait) close() {
	if w == nil {
		return
	}
	if w.stopWatch != nil {
		w.stopWatch()
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
	s.sb = &standbyWait{confirm: watchOutgoing(s.members, s.log)}
	if err := s.writeStandby(st); err != nil {
		return err
	}
	mine := func(lag string, k proto.Kind) bool {
		return k == proto.KindCutover || (lag == s.lag && k == proto.KindSnapshot)
	}
	watchCtx, stop := context.WithCancel(ctx)
	s.sb.stopWatch = stop
	events, err := statefile.WatchOnly(watchCtx, s.dir.Path(), mine)
	if err != nil {
		return err
	}
	s.sb.events = events
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
	if _, err := s.dir.Write(rec); err != nil {
		return fmt.Errorf("standby record: %w", err)
	}
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
		at := min(c.DeadlineMono, c.StartedMono+int64(s.opts.Budget))
		wait := time.Duration(at - w.timings.CutoverSeen)
		s.log.Info("cutover", "from_epoch", c.FromEpoch, "deadline_in", wait)
		w.deadline = time.After(wait)
		if w.pending == nil {
			return nil
		}
		ev, w.pending = *w.pending, nil
	case ev.Kind != proto.KindSnapshot || ev.LAG != s.lag:
		return nil
	}
	seen := monoclock.Now()
	err := s.judgeSnapshot(ev, w.cut)
	if errors.Is(err, errNoCutover) {
		w.pending = &ev
		return nil
	}
	if err != nil {
		s.log.Warn("snapshot rejected", "file", ev.Path, "reason", err)
		w.rejected = append(w.rejected, err.Error())
		return nil
	}
	w.timings.SnapshotSeen = seen
	return s.takeOver(EventSnapshot, proto.PathSnapshot, ev.Record.(*proto.Snapshot).Epoch, "")
}

// deadline: the cutover's budget is spent without a valid snapshot.
func (s *Shim) deadline() error {
	note := "no snapshot before the deadline"
	if len(s.sb.rejected) > 0 {
		note = "snapshots rejected: " + strings.Join(s.sb.rejected, "; ")
	}
	s.log.Warn("deadline: taking over without a snapshot", "why", note)
	return s.takeOver(EventDeadline, proto.PathDeadline, 0, note)
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
	case snap.TakenMono < cut.StartedMono:
		return fmt.Errorf("taken %v before the cutover: a leftover", time.Duration(cut.StartedMono-snap.TakenMono))
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
	if at, err := w.confirm.wait(sent, s.opts.ConfirmTimeout); err != nil {
		s.log.Error("takeover not confirmed", "err", err)
	} else {
		t.Confirmed = t.SignalSent + int64(at.Sub(sent))
	}
	if dump, err := s.teamd.stateDump(context.Background(), callTimeout); err == nil && dump.Setup.Passive != nil && *dump.Setup.Passive {
		s.log.Error("teamd is still passive after the takeover signal", "signal", s.opts.TakeoverSignal)
	}
	if err := s.writeActive(path, from, *t, note, before); err != nil {
		return err
	}
	if err := s.dir.Remove(s.lag, proto.KindStandby); err != nil {
		s.log.Warn("removing the standby record", "err", err)
	}
	s.sb.close()
	s.sb = nil
	return s.enter(StateActive, EventTransmits)
}
