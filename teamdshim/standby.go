package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamdshim/teamdctl"
)

// errNoCutover holds a snapshot back until the cutover it belongs to is
// seen: a snapshot is only trusted if it was taken after the cutover.
var errNoCutover = errors.New("no cutover for this epoch yet")

// standby runs the standby role: wait until teamd is ready, announce it,
// then wait for a valid snapshot or the deadline and take over. done is
// true if teamd exited (the shim is finished); false once it took over.
func (s *Shim) standby(ctx context.Context) (done bool, err error) {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var (
		events   <-chan statefile.Event
		deadline <-chan time.Time
		cut      *proto.Cutover
		pending  *statefile.Event // a snapshot seen before its cutover
		rejected []string
		t        proto.Timings
		confirm  *outgoing
	)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	defer func() {
		if confirm != nil {
			confirm.close()
		}
	}()
	s.log.Info("standby: waiting for teamd to hear the partner on every member")
	for {
		select {
		case <-s.teamd.done:
			return true, nil
		case <-ctx.Done():
			s.relay(syscall.SIGTERM)
			ctx = context.Background()
		case sig := <-s.sigs:
			s.relay(sig.(syscall.Signal))

		case <-tick.C:
			st, err := s.teamd.stateDump(ctx, callTimeout)
			if err != nil || !s.ready(st) {
				continue
			}
			tick.Stop()
			s.members = portNames(st)
			confirm = watchOutgoing(s.members, s.log)
			if err := s.writeStandby(st); err != nil {
				return false, err
			}
			mine := func(lag string, k proto.Kind) bool {
				return k == proto.KindCutover || (lag == s.lag && k == proto.KindSnapshot)
			}
			if events, err = statefile.WatchOnly(watchCtx, s.dir.Path(), mine); err != nil {
				return false, err
			}

		case ev, ok := <-events:
			if !ok {
				return false, fmt.Errorf("watching %s ended", s.dir.Path())
			}
			switch {
			case ev.Name == "" && ev.Err != nil:
				s.log.Warn("record watch", "err", ev.Err)
			case ev.Kind == proto.KindCutover && !ev.Removed:
				c, err := s.judgeCutover(ev)
				if err != nil {
					s.log.Warn("cutover ignored", "reason", err)
					continue
				}
				cut, t.CutoverSeen = c, monoclock.Now()
				at := min(c.DeadlineMono, c.StartedMono+int64(s.opts.Budget))
				wait := time.Duration(at - t.CutoverSeen)
				s.log.Info("cutover", "from_epoch", c.FromEpoch, "deadline_in", wait)
				deadline = time.After(wait)
				if pending == nil {
					continue
				}
				ev, pending = *pending, nil
				fallthrough
			case ev.Kind == proto.KindSnapshot && ev.LAG == s.lag && !ev.Removed:
				seen := monoclock.Now()
				err := s.judgeSnapshot(ev, cut)
				if errors.Is(err, errNoCutover) {
					pending = &ev
					continue
				}
				if err != nil {
					s.log.Warn("snapshot rejected", "file", ev.Path, "reason", err)
					rejected = append(rejected, err.Error())
					continue
				}
				t.SnapshotSeen = seen
				snap := ev.Record.(*proto.Snapshot)
				return false, s.takeOver(proto.PathSnapshot, snap.Epoch, t, "", confirm)
			}

		case <-deadline:
			note := "no snapshot before the deadline"
			if len(rejected) > 0 {
				note = "snapshots rejected: " + strings.Join(rejected, "; ")
			}
			s.log.Warn("deadline: taking over without a snapshot", "why", note)
			return false, s.takeOver(proto.PathDeadline, 0, t, note, confirm)
		}
	}
}

// ready: every member of teamd hears the partner, and every member the old
// speaker announced is there.
func (s *Shim) ready(st *teamdctl.State) bool {
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

func (s *Shim) writeStandby(st *teamdctl.State) error {
	rec := &proto.Standby{
		Schema: proto.SchemaVersion, LAG: s.lag, Epoch: s.epoch, Writer: s.writer(), ConfigDigest: s.digest,
		ReadyMono: monoclock.Now(), Ready: time.Now(),
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
	slices.Sort(names)
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

// takeOver sends the takeover signal, confirms teamd transmits on every
// member, and writes .active.
func (s *Shim) takeOver(path proto.Path, from uint64, t proto.Timings, note string, confirm *outgoing) error {
	t.SignalSent = monoclock.Now()
	sent := time.Now()
	if err := s.teamd.signal(s.opts.TakeoverSignal); err != nil {
		return fmt.Errorf("takeover signal: %w", err)
	}
	if confirm != nil {
		if at, err := confirm.wait(sent, s.opts.ConfirmTimeout); err != nil {
			s.log.Error("takeover not confirmed", "err", err)
		} else {
			t.Confirmed = t.SignalSent + int64(at.Sub(sent))
		}
	}
	if err := s.writeActive(path, from, t, note); err != nil {
		return err
	}
	if err := s.dir.Remove(s.lag, proto.KindStandby); err != nil {
		s.log.Warn("removing the standby record", "err", err)
	}
	return nil
}
