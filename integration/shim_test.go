package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/internal/test/heldfiles"
	"github.com/teamdwarm/teamdwarm/internal/test/testbin"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamdshim"
)

type shimOpts struct {
	role     string // "" (active) or "standby"
	epoch    int
	dir      string // record directory
	dumpDir  string // teamd's -L
	takeover string // takeover signal
	fault    string // TEAMDSIM_FAULT
	flags    []string
	// hub, if set, passes the shim its LAG's subscription to a shared
	// watch of dir, as a container's init does; else it watches alone.
	hub *statefile.Hub
}

// startShim starts a teamd-shim around a stand-in in the DUT namespace;
// the returned sim's cmd is the shim, its runDir teamd's.
func startShim(t testing.TB, b *testbed.Bed, l testbed.LAG, o shimOpts) *sim {
	t.Helper()
	runDir := t.TempDir()
	args := []string{"netns", "exec", b.DUT, bins.shim, "run", "--dir", o.dir}
	if o.role != "" {
		args = append(args, "--role", o.role)
	}
	if o.epoch != 0 {
		args = append(args, "--epoch", fmt.Sprint(o.epoch))
	}
	if o.takeover != "" {
		args = append(args, "--takeover-signal", o.takeover)
	}
	args = append(args, o.flags...)
	args = append(args, "--", bins.teamdsim, "-t", l.Name, "-c", l.TeamdConfig(true), "-L", o.dumpDir)
	s := &sim{runDir: runDir, log: &testbin.Buffer{}, done: make(chan struct{}), lag: l}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), "TEAMDWARM_RUN_DIR="+runDir, "TEAMDSIM_RUN_DIR="+runDir,
		"TEAMDSIM_TAKEOVER_SIGNAL="+o.takeover, "TEAMDSIM_FAULT="+o.fault)
	if o.hub != nil {
		r, err := o.hub.Subscribe(l.Name)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close() // the shim's copy is its own
		cmd.ExtraFiles = []*os.File{r}
		cmd.Env = append(cmd.Env, teamdshim.EnvWatchFD+"=3")
	}
	s.launch(t, cmd, fmt.Sprintf("shim (%s epoch %d)", o.role, o.epoch))
	return s
}

// awaitRecords waits until every LAG has a record of kind k that ok
// accepts, and returns them by LAG.
func awaitRecords(t testing.TB, dir string, k proto.Kind, lags []testbed.LAG, timeout time.Duration, ok func(proto.Record) bool) map[string]proto.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	events, err := statefile.Watch(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, l := range lags {
		want[l.Name] = true
	}
	got := map[string]proto.Record{}
	for ev := range events {
		if ev.Kind == k && want[ev.LAG] && ev.Record != nil && ok(ev.Record) {
			got[ev.LAG] = ev.Record
			if len(got) == len(want) {
				return got
			}
		}
	}
	t.Fatalf("%d of %d LAGs have a %s record after %v", len(got), len(want), k, timeout)
	return nil
}

func epochIs(e uint64) func(proto.Record) bool {
	return func(r proto.Record) bool { return r.RecordEpoch() == e }
}

// writeCutover is the supervisor's b1 record: from epoch from to from+1.
func writeCutover(t testing.TB, dir string, from uint64, lags []testbed.LAG) *proto.Cutover {
	t.Helper()
	return writeCutoverInWaves(t, dir, from, lags, 0)
}

// writeCutoverInWaves is writeCutover asking for waves of window LAGs.
func writeCutoverInWaves(t testing.TB, dir string, from uint64, lags []testbed.LAG, window int) *proto.Cutover {
	t.Helper()
	d, err := statefile.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := monoclock.Now()
	c := &proto.Cutover{Schema: proto.SchemaVersion, FromEpoch: from, ToEpoch: from + 1, StartedMono: now,
		Started: time.Now(), DeadlineMono: now + int64(2500*time.Millisecond), Window: window}
	for _, l := range lags {
		c.LAGs = append(c.LAGs, l.Name)
	}
	if _, err := d.Write(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// recordDir is a record directory as the shims expect it: private to root.
func recordDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "teamdwarm")
	if _, err := statefile.OpenDir(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// shimsReadyToHandOver starts an active shim (epoch 1) for every LAG of
// the bed, then a standby (epoch 2) beside each, and returns the record
// directory and the old shims once every standby is ready.
func shimsReadyToHandOver(t *testing.T, b *testbed.Bed) (dir string, olds []*sim) {
	t.Helper()
	dir, dump := recordDir(t), t.TempDir()
	for _, l := range b.LAGs {
		olds = append(olds, startShim(t, b, l, shimOpts{dir: dir, dumpDir: dump}))
	}
	awaitRecords(t, dir, proto.KindActive, b.LAGs, 15*time.Second, epochIs(1))
	negotiated(t, b)
	for _, l := range b.LAGs {
		startShim(t, b, l, shimOpts{role: "standby", epoch: 2, dir: dir, dumpDir: dump, takeover: "SIGRTMIN+1"})
	}
	awaitRecords(t, dir, proto.KindStandby, b.LAGs, 15*time.Second, epochIs(2))
	return dir, olds
}

// The main case: eight fast-mode LAGs of two members under shims,
// all handed over by SIGUSR1 to the old shims, as the supervisor does. The
// peer must not notice, and every LAG must take the snapshot path.
func TestIntegrationShimHandsOverEightLAGs(t *testing.T) {
	b := newBed(t, 8, 2)
	dir, olds := shimsReadyToHandOver(t, b)

	reserved, err := heldfiles.Unnamed(statefile.WritingDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	w := mark(t, b)
	writeCutover(t, dir, 1, b.LAGs)
	for _, o := range olds {
		o.signal(syscall.SIGUSR1)
	}
	actives := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))
	for _, o := range olds {
		o.waitExit(t, 5*time.Second)
		if code := o.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s: old shim exit %d, want 0", o.lag.Name, code)
		}
	}
	for lag, r := range actives {
		a := r.(*proto.Active)
		if a.Path != proto.PathSnapshot || a.FromEpoch != 1 || a.Timings.Confirmed == 0 {
			t.Errorf("%s: path %s from epoch %d, confirmed %d: want a confirmed takeover from the snapshot of epoch 1 (%s)",
				lag, a.Path, a.FromEpoch, a.Timings.Confirmed, a.Note)
		}
		// The handoff allocates no file: the snapshot and the takeover's
		// .active fill files their shims reserved while they waited.
		for _, k := range []proto.Kind{proto.KindSnapshot, proto.KindActive} {
			var st syscall.Stat_t
			name := proto.FileName(lag, k)
			if err := syscall.Stat(filepath.Join(dir, name), &st); err != nil {
				t.Fatal(err)
			}
			if _, ok := reserved[st.Ino]; !ok {
				t.Errorf("%s: inode %d was allocated in the handoff, not reserved before the cutover", name, st.Ino)
			}
		}
	}
	// Three fast periods after the handoff: any expiry it caused shows.
	time.Sleep(3500 * time.Millisecond)
	for _, l := range b.LAGs {
		if _, err := os.Stat(filepath.Join(dir, l.Name+".standby")); !os.IsNotExist(err) {
			t.Errorf("%s: standby record left after the takeover (%v)", l.Name, err)
		}
	}
	if v := judge(t, b, w, "8 LAGs handed over by the shims"); !v.Clean() {
		t.Fatal("the peer noticed the handoff")
	}
}

// A switch's LAGs hand over in waves, a window per fast period, each
// right after its old teamd's periodic PDU: SIGUSR1 reaches every old shim
// at once, a LAG of wave w stops its teamd no sooner than w periods after
// the cutover, and each waits for its teamd's next PDU, so that the peer's
// gap is the handoff's time, not a period plus it.
func TestIntegrationShimHandsOverInWaves(t *testing.T) {
	const window = 2
	b := newBed(t, 6, 2)
	dir, olds := shimsReadyToHandOver(t, b)

	w := mark(t, b)
	cut := writeCutoverInWaves(t, dir, 1, b.LAGs, window)
	for _, o := range olds {
		o.signal(syscall.SIGUSR1)
	}
	actives := awaitRecords(t, dir, proto.KindActive, b.LAGs, 15*time.Second, epochIs(2))
	snaps := awaitRecords(t, dir, proto.KindSnapshot, b.LAGs, time.Second, epochIs(1))
	for i, l := range b.LAGs {
		wave := i / window
		if got := cut.Wave(l.Name); got != wave {
			t.Fatalf("%s: wave %d, want %d", l.Name, got, wave)
		}
		if a := actives[l.Name].(*proto.Active); a.Path != proto.PathSnapshot {
			t.Errorf("%s: path %s, want snapshot (%s)", l.Name, a.Path, a.Note)
		}
		if after := time.Duration(snaps[l.Name].(*proto.Snapshot).TakenMono - cut.StartedMono); after < time.Duration(wave)*time.Second {
			t.Errorf("%s of wave %d handed over %v after the cutover, before its wave", l.Name, wave, after)
		}
		olds[i].waitExit(t, 5*time.Second)
		if log := olds[i].log.String(); !strings.Contains(log, "handing over right after it") {
			t.Errorf("%s: the old shim did not wait for its teamd's periodic PDU:\n%s", l.Name, log)
		}
	}
	time.Sleep(3500 * time.Millisecond) // three fast periods: any expiry it caused shows
	v := judge(t, b, w, "6 LAGs handed over in waves of 2")
	t.Logf("the peer's largest gap: %v", v.MaxGap())
	if !v.Clean() {
		t.Fatal("the peer noticed the handoff")
	}
}

// A corrupt snapshot must not drive a takeover, and must not stop the
// deadline from keeping the LAG up: the old teamd is stopped by hand here,
// a corrupt record lands under the snapshot's name, and the standby takes
// over on its own within the budget.
func TestIntegrationCorruptSnapshotDeadlineTakeover(t *testing.T) {
	b := newBed(t, 1, 2)
	l := b.LAGs[0]
	dir, dump := recordDir(t), t.TempDir()
	old := startSim(t, b, l, simOpts{dumpDir: dump})
	negotiated(t, b)
	startShim(t, b, l, shimOpts{role: "standby", epoch: 2, dir: dir, dumpDir: dump})
	awaitRecords(t, dir, proto.KindStandby, b.LAGs, 15*time.Second, epochIs(2))

	w := mark(t, b)
	writeCutover(t, dir, 1, b.LAGs)
	old.signal(syscall.SIGUSR1) // the old speaker goes silent...
	old.waitExit(t, 3*time.Second)
	// ...and what lands is a snapshot with one byte flipped.
	snap := &proto.Snapshot{Schema: proto.SchemaVersion, LAG: l.Name, Epoch: 1, ConfigDigest: "sha256:x", TakenMono: monoclock.Now()}
	raw, err := statefile.Encode(snap)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-3] ^= 0xff
	if err := statefile.WriteFileAtomic(filepath.Join(dir, l.Name+".snapshot"), raw); err != nil {
		t.Fatal(err)
	}
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[l.Name].(*proto.Active)
	if a.Path != proto.PathDeadline || !strings.Contains(a.Note, "checksum mismatch") {
		t.Errorf("path %s, note %q: want a deadline takeover that names the rejected snapshot", a.Path, a.Note)
	}
	if v := judgeSettled(t, b, w, "deadline takeover after a corrupt snapshot"); !v.Clean() {
		t.Fatal("the peer noticed")
	}
}

// An old teamd that ignores SIGUSR1 is killed at the old shim's bound, and
// the LAG still hands over by snapshot inside the deadline.
func TestIntegrationOldTeamdIgnoringSIGUSR1IsBounded(t *testing.T) {
	b := newBed(t, 1, 2)
	dir := recordDir(t)
	old := ignoringOldBesideStandby(t, b, dir)
	w := mark(t, b)
	writeCutover(t, dir, 1, b.LAGs)
	old.signal(syscall.SIGUSR1)
	a := awaitRecords(t, dir, proto.KindActive, b.LAGs, 10*time.Second, epochIs(2))[b.LAGs[0].Name].(*proto.Active)
	old.waitExit(t, 5*time.Second)
	snap, err := statefile.ReadFile(filepath.Join(dir, b.LAGs[0].Name+".snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	if stop := snap.(*proto.Snapshot).TeamdStop; !strings.HasPrefix(stop, "killed after 700ms") {
		t.Errorf("teamd_stop %q: want killed after 700ms", stop)
	}
	if a.Path != proto.PathSnapshot {
		t.Errorf("path %s (%s): want the snapshot, written once the old teamd was killed", a.Path, a.Note)
	}
	if v := judgeSettled(t, b, w, "old teamd ignoring SIGUSR1"); !v.Clean() {
		t.Fatal("the peer noticed")
	}
}

// ignoringOldBesideStandby starts, for the bed's one LAG, an old active
// shim whose teamd ignores SIGUSR1 (and transmits until the shim kills it,
// 700 ms on) and a ready standby, and returns the old one.
func ignoringOldBesideStandby(t *testing.T, b *testbed.Bed, dir string) *sim {
	t.Helper()
	dump := t.TempDir()
	old := startShim(t, b, b.LAGs[0], shimOpts{dir: dir, dumpDir: dump, fault: "ignore-sigusr1", flags: []string{"--stop-timeout", "700ms"}})
	awaitRecords(t, dir, proto.KindActive, b.LAGs, 15*time.Second, epochIs(1))
	negotiated(t, b)
	startShim(t, b, b.LAGs[0], shimOpts{role: "standby", epoch: 2, dir: dir, dumpDir: dump})
	awaitRecords(t, dir, proto.KindStandby, b.LAGs, 15*time.Second, epochIs(2))
	return old
}

// A standby whose teamd never hears the partner never says it is ready,
// and the old speaker goes on undisturbed.
func TestIntegrationStandbyNeverReadyWritesNoStandby(t *testing.T) {
	b := newBed(t, 1, 2)
	dir, dump := recordDir(t), t.TempDir()
	startShim(t, b, b.LAGs[0], shimOpts{dir: dir, dumpDir: dump})
	awaitRecords(t, dir, proto.KindActive, b.LAGs, 15*time.Second, epochIs(1))
	negotiated(t, b)
	w := mark(t, b)
	standby := startShim(t, b, b.LAGs[0], shimOpts{role: "standby", epoch: 2, dir: dir, dumpDir: dump, fault: "deaf"})
	// The partner sends every second; three periods without a .standby.
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	events, err := statefile.Watch(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if ev.Kind == proto.KindStandby {
			t.Fatalf("a deaf standby wrote %s", ev.Name)
		}
	}
	standby.signal(syscall.SIGTERM)
	standby.waitExit(t, 5*time.Second)
	if _, err := os.Stat(filepath.Join(dir, b.LAGs[0].Name+".standby")); !os.IsNotExist(err) {
		t.Errorf("standby record after the standby stopped: %v", err)
	}
	if v := judge(t, b, w, "a standby that never gets ready"); !v.Clean() {
		t.Fatal("the old speaker was disturbed")
	}
}
