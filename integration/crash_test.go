package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// The shim's crash safety, against the stand-in and the Open vSwitch peer:
// whatever dies, a standby takes over only once the old speaker is silent,
// and never leaves a LAG silent while it can speak.

// teamdPID is the pid in a shim's teamd pid file.
func teamdPID(t testing.TB, s *sim) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.runDir, s.lag.Name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// noRecord checks that no record of kind k and epoch for lag lands within
// d (a wait for an event that must not come).
func noRecord(t testing.TB, dir, lag string, k proto.Kind, epoch uint64, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	events, err := statefile.Watch(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if ev.LAG == lag && ev.Kind == k && ev.Record != nil && ev.Record.RecordEpoch() == epoch {
			t.Fatalf("%s of epoch %d landed: %+v", ev.Name, epoch, ev.Record)
		}
	}
}

// shimGone waits until the shim of lag at epoch holds its liveness lock no
// more (it died).
func shimGone(t testing.TB, dir, lag string, epoch uint64) {
	t.Helper()
	d, err := statefile.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, alive, err := d.Alive(lag, epoch); err == nil && !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shim of %s at epoch %d still holds its lock", lag, epoch)
		}
		time.Sleep(10 * time.Millisecond) // a lock has no notification
	}
}

// standbyOf starts an old active shim and a ready standby for the bed's
// one LAG and returns them with the window marked.
func standbyOf(t *testing.T, b *testbed.Bed, dir, dump string) (old, standby *sim, w testbed.Window) {
	t.Helper()
	old = startShim(t, b, b.LAGs[0], shimOpts{dir: dir, dumpDir: dump})
	awaitRecords(t, dir, proto.KindActive, b.LAGs, 15*time.Second, epochIs(1))
	negotiated(t, b)
	standby = startShim(t, b, b.LAGs[0], shimOpts{role: "standby", epoch: 2, dir: dir, dumpDir: dump})
	awaitRecords(t, dir, proto.KindStandby, b.LAGs, 15*time.Second, epochIs(2))
	return old, standby, mark(t, b)
}

// The supervisor died between the cutover record and SIGUSR1: the old
// speaker goes on, and the standby, past its deadline, waits instead of
// speaking beside it. Once the old one stops, it takes over.
func TestIntegrationDeadlineWaitsWhileTheOldSpeakerTransmits(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	old, standby, w := standbyOf(t, b, dir, dump)
	writeCutover(t, dir, 1, b.LAGs)
	noRecord(t, dir, b.LAGs[0].Name, proto.KindActive, 2, 3*time.Second)
	if !strings.Contains(standby.log.String(), "the old speaker is not silent") {
		t.Errorf("the standby does not say why it waits:\n%s", standby.log.String())
	}
	old.signal(syscall.SIGUSR1) // recover's SIGUSR1
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[b.LAGs[0].Name].(*proto.Active)
	if a.Path != proto.PathSnapshot {
		t.Errorf("path %s (%s), want snapshot", a.Path, a.Note)
	}
	if v := judgeSettled(t, b, w, "a cutover without SIGUSR1, then SIGUSR1"); !v.Clean() {
		t.Fatal("the peer noticed")
	}
}

// The old teamd dies (kill -9) while a standby is ready and no cutover
// has come. If its shim lives, the shim sees teamd exit and writes a
// snapshot from teamd's last state at once; if the shim died first, the
// standby finds the old speaker's sockets gone and fails over. Either way
// before the peer's expiry.
func TestIntegrationTakeoverWhenTheOldTeamdDies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		killShim bool
		path     proto.Path
		note     string
	}{
		{"shim lives", false, proto.PathSnapshot, "teamd died"},
		{"shim dead first", true, proto.PathFailover, "sockets are gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, 1, 2)
			dir, dump := recordDir(t), t.TempDir()
			old, _, w := standbyOf(t, b, dir, dump)
			teamdPid := teamdPID(t, old)
			if tc.killShim {
				if err := syscall.Kill(old.cmd.Process.Pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				// Its teamd keeps the shim's output open, so the process's
				// end is seen on its liveness lock.
				shimGone(t, dir, b.LAGs[0].Name, 1)
			}
			if err := syscall.Kill(teamdPid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[b.LAGs[0].Name].(*proto.Active)
			if a.Path != tc.path || !strings.Contains(a.Note, tc.note) {
				t.Errorf("path %s (%s), want %s, the note saying %q", a.Path, a.Note, tc.path, tc.note)
			}
			if !tc.killShim {
				old.waitExit(t, 5*time.Second)
				if code := old.cmd.ProcessState.ExitCode(); code != 137 {
					t.Errorf("old shim exit %d, want 137 (its teamd was killed)", code)
				}
			}
			if v := judgeSettled(t, b, w, "takeover after kill -9 of the old teamd, "+tc.name); !v.Clean() {
				t.Fatal("the peer noticed")
			}
		})
	}
}

// docker stop of the old container while its successor waits: SIGTERM to
// the old shim hands the LAG over instead of taking it down.
func TestIntegrationStopHandsOverToAReadyStandby(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	old, _, w := standbyOf(t, b, dir, dump)
	old.signal(syscall.SIGTERM)
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[b.LAGs[0].Name].(*proto.Active)
	if a.Path != proto.PathSnapshot || !strings.Contains(a.Note, "no cutover") {
		t.Errorf("path %s (%s), want the snapshot, without a cutover", a.Path, a.Note)
	}
	old.waitExit(t, 5*time.Second)
	if code := old.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("old shim exit %d, want 0", code)
	}
	if v := judgeSettled(t, b, w, "SIGTERM to the old shim with a ready standby"); !v.Clean() {
		t.Fatal("the peer noticed")
	}
}

// docker stop of the old container as the supervisor writes the cutover:
// the old shim's snapshot, begun before the cutover, lands after it (here
// its teamd ignores SIGUSR1 and transmits until killed at the shim's
// bound). It was taken after the standby was ready, so it is this
// handoff's, not a leftover: the standby takes over from it rather than
// on the deadline.
func TestIntegrationStopJustBeforeTheCutoverHandsOver(t *testing.T) {
	b := newBed(t, 1, 2)
	dir := recordDir(t)
	old := ignoringOldBesideStandby(t, b, dir)
	w := mark(t, b)
	old.signal(syscall.SIGTERM)
	if !old.log.WaitFor(`msg="handing over"`, 5*time.Second) {
		t.Fatalf("the old shim does not hand over:\n%s", old.log.String())
	}
	writeCutover(t, dir, 1, b.LAGs)
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[b.LAGs[0].Name].(*proto.Active)
	if a.Path != proto.PathSnapshot || !strings.Contains(a.Note, "just before the cutover") {
		t.Errorf("path %s (%s), want the snapshot taken just before the cutover", a.Path, a.Note)
	}
	if v := judgeSettled(t, b, w, "SIGTERM to the old shim just before the cutover"); !v.Clean() {
		t.Fatal("the peer noticed")
	}
}

// An old container frozen (docker pause) falls silent with its sockets
// open: with no cutover, the standby fails over after two quiet periods
// (so the peer's gap stays under 2.5 s, short of its 3 s expiry); thawed,
// the old shim finds the newer epoch and steps down, leaving the kernel's
// LAG to it.
func TestIntegrationFrozenOldSpeakerIsFenced(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	old, _, w := standbyOf(t, b, dir, dump)
	frozen := []int{old.cmd.Process.Pid, teamdPID(t, old)}
	for _, pid := range frozen {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[b.LAGs[0].Name].(*proto.Active)
	if a.Path != proto.PathFailover || !strings.Contains(a.Note, "no LACPDU left the members") {
		t.Errorf("path %s (%s), want a failover on the wire's silence", a.Path, a.Note)
	}
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	old.waitExit(t, 10*time.Second)
	if code := old.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(old.log.String(), "stepping down") {
		t.Errorf("old shim exit %d, want 0 after stepping down:\n%s", code, old.log.String())
	}
	v := judgeSettled(t, b, w, "old speaker frozen, failover, thawed and fenced")
	for _, m := range v.Members {
		if m.ExpiredDelta > 0 || m.MaxGap > 2500*time.Millisecond || m.OutOfSync > 0 {
			t.Errorf("%s: expired %d, largest gap %v, out of sync %d", m.Member, m.ExpiredDelta, m.MaxGap, m.OutOfSync)
		}
	}
}

// Two standbys of one epoch (a second new container) cannot both wait:
// the second shim is refused, naming the first.
func TestIntegrationSecondStandbyOfAnEpochIsRefused(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	standbyOf(t, b, dir, dump)
	second := startShim(t, b, b.LAGs[0], shimOpts{role: "standby", epoch: 2, dir: dir, dumpDir: dump})
	second.waitExit(t, 10*time.Second)
	if code := second.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(second.log.String(), "another teamd-shim runs "+b.LAGs[0].Name+" at epoch 2") {
		t.Fatalf("second standby: exit %d:\n%s", code, second.log.String())
	}
}

// Two stand-ins speaking for one LAG are seen as two speakers by the
// verdict: both send the same actor information, only the timing differs.
func TestIntegrationTwoSpeakersAreDetected(t *testing.T) {
	b := newBed(t, 1, 2)
	startSim(t, b, b.LAGs[0], simOpts{})
	negotiated(t, b)
	w := mark(t, b)
	startSim(t, b, b.LAGs[0], simOpts{})
	time.Sleep(6 * time.Second) // five fast periods of both
	v := judge(t, b, w, "two speakers")
	for _, m := range v.Members {
		if m.TwoSpeakers == "" {
			t.Errorf("%s: two speakers not seen (%d PDUs)", m.Member, m.PDUs)
		}
	}
}

// The standby stops existing between the old shim's handoff and its own
// takeover (its container stopped at the cutover): the old shim finds the
// next epoch gone, withdraws its snapshot and takes the LAG back, teamd
// warm-starting from the dump files it just wrote.
func TestIntegrationStrandedHandoffIsTakenBack(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	old, standby, w := standbyOf(t, b, dir, dump)
	// Frozen, the standby holds its lock (it looks alive and ready) but
	// cannot take over.
	frozen := []int{standby.cmd.Process.Pid, teamdPID(t, standby)}
	for _, pid := range frozen {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	writeCutover(t, dir, 1, b.LAGs)
	old.signal(syscall.SIGUSR1)
	awaitRecords(t, dir, proto.KindSnapshot, b.LAGs, 10*time.Second, epochIs(1))
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	takenBack := func(r proto.Record) bool {
		a := r.(*proto.Active)
		return a.Epoch == 1 && strings.Contains(a.Note, "taken back")
	}
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, takenBack)[b.LAGs[0].Name].(*proto.Active)
	if a.Path != proto.PathRestart {
		t.Errorf("path %s (%s), want restart", a.Path, a.Note)
	}
	if d, err := statefile.OpenDir(dir); err != nil {
		t.Fatal(err)
	} else if _, err := d.Read(b.LAGs[0].Name, proto.KindSnapshot); err == nil {
		t.Error("the withdrawn snapshot is still there: a late standby could take over from it")
	}
	if v := judgeSettled(t, b, w, "standby gone after the handoff, taken back"); !v.Clean() {
		t.Fatalf("the peer noticed:\n%s", old.log.String())
	}
}

// The standby is stopped (its container with it) while the old shim waits
// for its LAG's turn in a later wave, and its teamd is slow to stop (here:
// frozen). The standby lets go of its record and lock at once, and the old
// shim, finding no shim of the next epoch at its turn, keeps the LAG
// instead of leaving it silent.
func TestIntegrationStandbyStoppedBeforeTheTurnKeepsTheLAG(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	old, standby, w := standbyOf(t, b, dir, dump)
	if err := syscall.Kill(teamdPID(t, standby), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The LAG second in waves of one: its turn is a fast period away.
	writeCutoverInWaves(t, dir, 1, []testbed.LAG{{Name: "PortChannel99"}, b.LAGs[0]}, 1)
	old.signal(syscall.SIGUSR1)
	if !old.log.WaitFor("handing over in a later wave", 5*time.Second) {
		t.Fatalf("the old shim does not wait for its turn:\n%s", old.log.String())
	}
	standby.signal(syscall.SIGTERM)
	shimGone(t, dir, b.LAGs[0].Name, 2)
	select {
	case <-standby.done:
		t.Fatal("the standby's shim exited: its frozen teamd cannot have stopped")
	default: // it let its lock go while it waits for its teamd
	}
	if !old.log.WaitFor("handoff called off at the LAG's turn", 5*time.Second) {
		t.Fatalf("the old shim did not call its handoff off:\n%s", old.log.String())
	}
	noRecord(t, dir, b.LAGs[0].Name, proto.KindSnapshot, 1, time.Second)
	select {
	case <-old.done:
		t.Fatalf("the old shim exited:\n%s", old.log.String())
	default:
	}
	if v := judgeSettled(t, b, w, "standby stopped before the LAG's turn"); !v.Clean() {
		t.Fatalf("the peer noticed:\n%s", old.log.String())
	}
}
