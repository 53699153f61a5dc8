package teamdshim

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// The epochs fence the LAG's speakers: once a shim of a newer epoch has
// written the LAG's .active (a failover, or a deadline takeover beside an
// old container that was frozen), an older active shim must stop speaking.
// It looks at .active on its member poll (a stat; a read only when the
// file changed), and steps down: its teamd stops without touching the
// kernel's LAG, which the new speaker runs now.

// fileVersion tells two versions of a record file apart: every write is a
// rename of a new inode.
type fileVersion struct {
	ino, mtime, size int64
}

// fenced reports whether the LAG's .active now belongs to a newer epoch.
func (s *Shim) fenced() bool {
	var st unix.Stat_t
	if err := unix.Stat(s.dir.File(s.lag, proto.KindActive), &st); err != nil {
		return false
	}
	v := fileVersion{int64(st.Ino), st.Mtim.Nano(), st.Size}
	if v == s.fence {
		return false
	}
	s.fence = v
	rec, err := s.dir.Read(s.lag, proto.KindActive)
	if err != nil {
		return false
	}
	if rec.RecordEpoch() > s.epoch {
		a := rec.(*proto.Active)
		s.log.Error("a newer epoch speaks for the LAG: stepping down", "epoch", s.epoch, "newer", a.Epoch, "path", a.Path, "writer", a.Writer.Container)
		return true
	}
	return false
}

// stepDown stops a fenced shim's teamd without taking the LAG down: the
// warm stop where teamd has one (it leaves ports and carrier as they
// are), else SIGKILL (teamd's own SIGTERM would remove the ports from the
// team device the new speaker runs). The shim exits 0: nothing failed.
func (s *Shim) stepDown() (int, error) {
	sig := syscall.SIGKILL
	if s.profile.WarmStop() {
		sig = syscall.SIGUSR1
	}
	if err := s.teamd.signal(sig); err != nil && !errors.Is(err, errExited) {
		s.log.Error("stopping the fenced teamd", "err", err)
	}
	how := s.teamd.stop(s.opts.StopTimeout, "did not stop when fenced")
	s.log.Info("fenced teamd stopped", "how", how)
	s.handedOver = true
	if err := s.enter(StateDone, EventFenced); err != nil {
		return 1, s.fail(EventFenced, err)
	}
	return 0, nil
}

// standbyWaiting reports whether a standby of the next epoch is ready for
// the LAG: its record is there and its shim lives.
func (s *Shim) standbyWaiting() bool {
	rec, err := s.dir.Read(s.lag, proto.KindStandby)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("the LAG's standby record", "err", err)
		}
		return false
	}
	if rec.RecordEpoch() != s.epoch+1 {
		return false
	}
	_, alive, err := s.dir.Alive(s.lag, s.epoch+1)
	return err == nil && alive
}
