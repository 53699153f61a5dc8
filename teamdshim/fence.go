package teamdshim

import (
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"golang.org/x/sys/unix"
)

// The epochs fence the LAG's speakers: once a shim of a newer epoch has
// written the LAG's .active (a failover, or a deadline takeover beside an
// old container that was frozen), an older active shim must stop speaking.
// It looks at .active when init's shared watch says it changed (at once),
// and on its member poll (a stat; a read only when the file changed), and
// steps down: its teamd stops without touching the kernel's LAG, which the
// new speaker runs now.

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
// the LAG: its record is there, written by the shim that holds the next
// epoch's liveness lock now (a shim that died and was restarted has not
// said it is ready again until it rewrites the record).
func (s *Shim) standbyWaiting() bool {
	ready, _ := s.standbyState()
	return ready
}

// standbyState says whether the next epoch's standby is ready, and
// whether one runs at all (its shim holds the lock).
func (s *Shim) standbyState() (ready, running bool) {
	who, alive, err := s.dir.Alive(s.lag, s.epoch+1)
	if err != nil || !alive {
		return false, false
	}
	rec, err := s.dir.Read(s.lag, proto.KindStandby)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("the LAG's standby record", "err", err)
		}
		return false, true
	}
	sb := rec.(*proto.Standby)
	return sb.Epoch == s.epoch+1 && sb.Writer.PID == statefile.LivePID(who), true
}

// readyStandbyWait bounds how long an active shim told to stop or hand over
// waits for a standby that runs but is not ready yet (just restarted, or
// still learning the partner): the LAG is better kept than left silent.
const readyStandbyWait = 5 * time.Second

// awaitStandby waits, up to timeout, for the next epoch's standby to be
// ready; it returns at once if none runs.
func (s *Shim) awaitStandby(timeout time.Duration) (ready, running bool) {
	deadline := time.Now().Add(timeout)
	logged := false
	for {
		ready, running := s.standbyState()
		if ready || !running {
			return ready, running
		}
		if time.Now().After(deadline) {
			s.log.Warn("the standby of the next epoch did not get ready", "waited", timeout)
			return false, true
		}
		if !logged {
			logged = true
			s.log.Info("a standby of the next epoch runs but is not ready: waiting for it", "up_to", timeout)
		}
		time.Sleep(50 * time.Millisecond) // its record has no notification here; a watch for one file is not worth it
	}
}
