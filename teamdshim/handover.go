package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

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
		// Without teamd's state the snapshot lists no members and the
		// standby will reject it and take over at the deadline: still
		// better than keeping an unanswering teamd.
		s.log.Error("state dump before the handoff failed", "err", dumpErr)
	}
	lastTxMono, lastTx := monoclock.Now(), time.Now()
	if err := s.teamd.signal(syscall.SIGUSR1); err != nil && !errors.Is(err, errExited) {
		s.log.Error("SIGUSR1 to teamd", "err", err)
	}
	how := s.teamd.stop(s.opts.StopTimeout, "did not exit on SIGUSR1")
	s.log.Info("teamd stopped", "how", how, "after", time.Since(lastTx))

	snap := &proto.Snapshot{
		Schema: proto.SchemaVersion, LAG: s.lag, Epoch: s.epoch, Writer: s.writer(), ConfigDigest: s.digest,
		TeamdStop: how, TakenMono: takenMono, Taken: taken, Teamd: s.info, Kernel: s.readKernel(),
	}
	if st != nil {
		snap.TeamMAC, _ = proto.ParseMAC(st.TeamDevice.IfInfo.DevAddr)
		snap.Runner = proto.Runner{Active: st.Runner.Active, FastRate: st.Runner.FastRate, SysPrio: uint16(st.Runner.SysPrio)}
		snap.Members = s.snapshotMembers(st, lastTxMono, lastTx)
	} else {
		snap.TeamdStop += fmt.Sprintf("; no state: %v", dumpErr)
	}
	snap.LAGDump = s.readDump(s.lag, func(b []byte) error { _, err := teamd.ParseLAGDump(b); return err })
	if _, err := s.dir.Publish(snap); err != nil {
		return s.fail(ev, fmt.Errorf("snapshot: %w", err))
	}
	s.handedOver = true
	s.log.Info("snapshot written", "members", len(snap.Members), "took", time.Since(taken))
	return s.enter(StateDone, EventHandedOver)
}

// snapshotMembers turns teamd's port states into snapshot members, with the
// partner's last PDU from teamd's per-port dump file.
func (s *Shim) snapshotMembers(st *teamd.State, lastTxMono int64, lastTx time.Time) []proto.Member {
	var ms []proto.Member
	for _, name := range st.PortNames() {
		p := st.Ports[name]
		m := proto.Member{
			Name: name, Ifindex: p.IfInfo.Ifindex, State: p.Runner.State, Selected: p.Runner.Selected,
			AggregatorID: p.Runner.Aggregator.ID, LastTxMono: lastTxMono, LastTx: lastTx,
		}
		m.MAC, _ = proto.ParseMAC(p.IfInfo.DevAddr)
		var err error
		if m.Actor, err = p.Runner.ActorLACPDUInfo.Info(); err != nil {
			s.log.Warn("actor info from teamd", "port", name, "err", err)
		}
		if m.Partner, err = p.Runner.PartnerLACPDUInfo.Info(); err != nil {
			s.log.Warn("partner info from teamd", "port", name, "err", err)
		}
		m.LastRx = s.readDump(name, func(b []byte) error { _, err := teamd.ParsePortDump(b); return err })
		ms = append(ms, m)
	}
	return ms
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
