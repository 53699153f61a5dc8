package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// handOver is the active shim's answer to SIGUSR1 (or to SIGTERM while a
// standby waits): state dump, SIGUSR1 to teamd, a bounded wait for its
// exit, its dump files, then the snapshot. The snapshot is written only
// once teamd is gone: its existence tells the standby that the old speaker
// is silent.
func (s *Shim) handOver(ctx context.Context, ev Event) error {
	if err := s.enter(StateHandingOver, ev); err != nil {
		return s.fail(ev, err)
	}
	takenMono, taken := monoclock.Now(), time.Now()
	s.log.Info("handing over", "on", ev)
	st, dumpErr := s.teamd.stateDump(ctx, callTimeout)
	if dumpErr != nil {
		// teamd died or does not answer: its last known state stands in
		// (the snapshot says so); without any, the snapshot lists no
		// members, the standby rejects it and takes over once it finds
		// the old speaker silent.
		s.log.Error("state dump before the handoff failed", "err", dumpErr)
		st = s.lastDump
	}
	lastTxMono, lastTx := monoclock.Now(), time.Now()
	if err := s.teamd.signal(syscall.SIGUSR1); err != nil && !errors.Is(err, errExited) {
		s.log.Error("SIGUSR1 to teamd", "err", err)
	}
	how := s.teamd.stop(s.opts.StopTimeout, "did not exit on SIGUSR1")
	s.log.Info("teamd stopped", "how", how, "after", time.Since(lastTx))

	switch {
	case st == nil:
		how += fmt.Sprintf("; no state: %v", dumpErr)
	case dumpErr != nil:
		how += fmt.Sprintf("; its state is the last one it gave (%v)", dumpErr)
	}
	snap := s.newSnapshot(st, how, takenMono, taken, lastTxMono, lastTx)
	snap.LAGDump = s.readDump(s.lag, func(b []byte) error { _, err := teamd.ParseLAGDump(b); return err })
	if _, err := s.dir.Publish(snap); err != nil {
		return s.fail(ev, fmt.Errorf("snapshot: %w", err))
	}
	s.handedOver = true
	s.log.Info("snapshot written", "members", len(snap.Members), "took", time.Since(taken))
	return s.enter(StateDone, EventHandedOver)
}

// awaitRound waits for the LAG's turn in the handoff cut asks for: its
// wave's periods (proto.Cutover.Wave), then, up to a period more, until
// teamd has sent its next periodic LACPDU on every member, so that the
// handoff starts right after it. The peer then sees the old teamd's last
// PDU and the new one's first closer together than a period however long
// the handoff takes under a switch's load (hundreds of milliseconds), not
// a period plus it; and the waves keep a switch's handoffs from all
// competing for the CPU at once (their teamds may well all transmit in
// step). Only a fast-rate LAG waits (alignPeriod); without teamd's state or
// sockets on its members, the shim does not wait for the PDU.
func (s *Shim) awaitRound(cut *proto.Cutover) {
	st := s.lastDump
	if st == nil || len(st.Ports) == 0 {
		return
	}
	period := alignPeriod(silenceProof(st))
	if period == 0 {
		return
	}
	start := time.Now()
	wave := cut.Wave(s.lag)
	if wave > 0 {
		s.log.Info("handing over in a later wave", "wave", wave, "in", time.Duration(wave)*period)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.teamd.done: // nobody to wait for
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := lacpsock.AwaitTurn(ctx, wave, period, st.PortNames(), lacpsock.Sent); err != nil {
		if ctx.Err() == nil { // teamd's exit needs no word
			s.log.Warn("handing over without waiting for teamd's next PDU", "err", err)
		}
		return
	}
	s.log.Info("teamd sent its periodic PDU: handing over right after it", "waited", time.Since(start).Round(time.Millisecond))
}

// After a handoff to the next epoch the shim stays until that epoch speaks
// for the LAG, up to successorWait. If the next epoch's liveness lock
// stays free for successorGone (init restarts a killed shim within
// milliseconds, and the lock is the first thing it takes), nobody will: the
// LAG is taken back.
const (
	successorWait = 10 * time.Second
	successorGone = 300 * time.Millisecond
	successorTick = 50 * time.Millisecond
)

// awaitSuccessor waits for the next epoch to take the LAG over, and says
// whether it must be taken back instead. The LAG's .active is looked at
// when init's shared watch says it changed (the shim ends as soon as its
// successor speaks) and on every tick, which also looks at the next
// epoch's liveness lock (a lock has no notification). Before it says
// "take back", it withdraws the snapshot, so that no shim of the next
// epoch that starts late takes over from it while this one transmits again
// (one that does start finds the wire busy and waits); if one started in
// between, the snapshot is put back and the LAG left to it.
func (s *Shim) awaitSuccessor(ctx context.Context) (takeBack bool) {
	deadline := time.Now().Add(successorWait)
	tick := time.NewTicker(successorTick)
	defer tick.Stop()
	fence := s.fenceWatch
	var free time.Time // since when no shim of the next epoch runs
	for {
		if s.successorSpeaks() {
			return false
		}
		switch {
		case s.successorAlive():
			free = time.Time{}
		case free.IsZero():
			free = time.Now()
		case time.Since(free) >= successorGone:
			return s.withdrawSnapshot()
		}
		if time.Now().After(deadline) {
			s.log.Warn("the next epoch has not taken the LAG over; leaving it to it", "waited", successorWait)
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case sig := <-s.sigs:
			if sig != syscall.SIGUSR1 {
				return false // stopped: the container goes
			}
		case ev, ok := <-fence:
			switch {
			case !ok:
				fence = nil // the ticks still look
			case ev.Kind == proto.KindActive && ev.LAG == s.lag:
				s.noteActive(ev) // what the watch read, successorSpeaks need not
			}
		case <-tick.C:
		}
	}
}

// withdrawSnapshot removes the handoff's snapshot before a take-back; it
// says false (and puts the snapshot back) if the next epoch turned up.
func (s *Shim) withdrawSnapshot() bool {
	rec, err := s.dir.Read(s.lag, proto.KindSnapshot)
	if err != nil || rec.RecordEpoch() != s.epoch {
		return false
	}
	if err := s.dir.Remove(s.lag, proto.KindSnapshot); err != nil {
		s.log.Error("withdrawing the snapshot for a take-back", "err", err)
		return false
	}
	if s.successorAlive() || s.successorSpeaks() {
		if _, err := s.dir.Publish(rec); err != nil {
			s.log.Error("putting the snapshot back", "err", err)
		}
		return false
	}
	s.log.Error("no shim of the next epoch runs and none took the LAG over: taking it back", "epoch", s.epoch, "next", s.epoch+1)
	s.handedOver = false
	return true
}

// successorAlive reports whether a shim of the next epoch runs.
func (s *Shim) successorAlive() bool {
	_, alive, err := s.dir.Alive(s.lag, s.epoch+1)
	return err != nil || alive // unknown counts as alive: never a take-back on doubt
}

// successorSpeaks reports whether a newer epoch's .active is there.
func (s *Shim) successorSpeaks() bool { return s.newerActive() != nil }

// diedSnapshot: the active teamd died (not by the shim's doing). If a
// standby of the next epoch is ready, the snapshot tells it at once that
// the old speaker is silent, with teamd's last known state, so that the LAG
// is taken over now rather than when the standby finds out by itself.
func (s *Shim) diedSnapshot() {
	if !s.standbyWaiting() {
		return
	}
	now, wall := monoclock.Now(), time.Now()
	snap := s.newSnapshot(s.lastDump, "teamd died: "+s.teamd.describe(), now, wall, now, wall)
	if _, err := s.dir.Publish(snap); err != nil {
		s.log.Error("snapshot after teamd died", "err", err)
		return
	}
	s.handedOver = true
	s.log.Warn("teamd died; a standby of the next epoch is ready: snapshot written so that it takes over at once", "teamd", s.teamd.describe())
}

// newSnapshot is the LAG's snapshot from teamd's state st (nil: none is
// known), taken at takenMono, teamd stopped as how, its last PDU sent at
// lastTxMono.
func (s *Shim) newSnapshot(st *teamd.State, how string, takenMono int64, taken time.Time, lastTxMono int64, lastTx time.Time) *proto.Snapshot {
	snap := &proto.Snapshot{
		Schema: proto.SchemaVersion, LAG: s.lag, Epoch: s.epoch, Writer: s.writer(), ConfigDigest: s.digest,
		TeamdStop: how, TakenMono: takenMono, Taken: taken, Teamd: s.info, Kernel: s.readKernel(),
	}
	if st != nil {
		snap.TeamMAC, snap.Runner = teamd.SnapshotRunner(st)
		snap.Members = teamd.SnapshotMembers(st, lastTxMono, lastTx,
			func(port string) []byte {
				return s.readDump(port, func(b []byte) error { _, err := teamd.ParsePortDump(b); return err })
			},
			func(port, field string, err error) { s.log.Warn(field+" info from teamd", "port", port, "err", err) })
	}
	return snap
}

// readDump reads teamd's dump file name from the -L directory if it is
// there and check accepts it. The files stay: the new teamd reads and
// deletes them when it takes over.
func (s *Shim) readDump(name string, check func([]byte) error) []byte {
	if s.dumpDir == "" {
		return nil
	}
	path := filepath.Join(s.dumpDir, name)
	b, err := statefile.ReadBounded(path)
	if err == nil {
		err = check(b)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("teamd dump file left out of the snapshot", "file", path, "err", err)
		}
		return nil
	}
	return b
}
