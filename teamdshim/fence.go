package teamdshim

import (
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// The epochs fence the LAG's speakers: once a shim of a newer epoch has
// written the LAG's .active (a failover, or a deadline takeover beside an
// old container that was frozen), an older active shim must stop speaking.
// It looks at .active when init's shared watch says it changed (at once),
// and on its member poll (a stat; a read only when the file changed), and
// steps down: its teamd stops without touching the kernel's LAG, which the
// new speaker runs now.

// seenActive is the LAG's .active as the shim last saw it: the version,
// and the record if that version held a valid one.
type seenActive struct {
	version statefile.Version
	rec     *proto.Active
}

// newerActive returns the LAG's .active if it belongs to an epoch newer than
// this shim's. It reads the file only if a stat finds a version the shim
// has not seen yet, read or in a watch's event (noteActive).
func (s *Shim) newerActive() *proto.Active {
	path := s.dir.File(s.lag, proto.KindActive)
	v, err := statefile.VersionOf(path)
	if err != nil {
		return nil
	}
	if v != s.seen.version {
		rec, err := statefile.ReadFile(path)
		s.noteActive(statefile.Event{Version: v, Record: rec, Err: err})
	}
	if a := s.seen.rec; a != nil && a.Epoch > s.epoch {
		return a
	}
	return nil
}

// noteActive keeps what a watch's event (or a read) says the LAG's .active
// holds, so that newerActive need not read that version again: init's
// watch has read it for every shim that subscribes to it.
func (s *Shim) noteActive(ev statefile.Event) {
	s.seen.version, s.seen.rec = ev.Version, nil
	if a, ok := ev.Record.(*proto.Active); ok && ev.Err == nil {
		s.seen.rec = a
	}
}

// fenced reports whether the LAG's .active now belongs to a newer epoch.
func (s *Shim) fenced() bool {
	a := s.newerActive()
	if a == nil {
		return false
	}
	s.log.Error("a newer epoch speaks for the LAG: stepping down", "epoch", s.epoch, "newer", a.Epoch, "path", a.Path, "writer", a.Writer.Container)
	return true
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
