package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/supervisor"
	"github.com/teamdwarm/teamdwarm/supervisor/enginetest"
)

// dies runs an upgrade whose supervisor dies (its goroutine ends, as the
// process would: deferred unlocks run, nothing else) when die says so, at
// a step of its progress or at an engine call. It returns once it is dead.
func (fs *fakeSwitch) dies(o supervisor.Options, atStep func(supervisor.Step) bool, atCall func(op string, args []string) bool) {
	fs.t.Helper()
	if atStep != nil {
		o.Progress = func(st supervisor.Step) {
			if atStep(st) {
				runtime.Goexit()
			}
		}
	}
	if atCall != nil {
		fs.e.Fail = func(op, _ string, args ...string) error {
			if atCall(op, args) {
				runtime.Goexit()
			}
			return nil
		}
	}
	s, err := supervisor.New(fs.e, o)
	if err != nil {
		fs.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	finished := false
	go func() {
		defer wg.Done()
		_, _ = s.Upgrade(context.Background(), supervisor.OpUpgrade)
		finished = true
	}()
	wg.Wait()
	fs.e.Fail = nil
	if finished {
		fs.t.Fatal("the supervisor did not die where the test said")
	}
}

func (fs *fakeSwitch) recover(o supervisor.Options) (*supervisor.Report, error) {
	fs.t.Helper()
	s, err := supervisor.New(fs.e, o)
	if err != nil {
		fs.t.Fatal(err)
	}
	rep, err := s.Recover(context.Background())
	if rep == nil {
		fs.t.Fatalf("no report (%v)", err)
	}
	fs.t.Logf("recover: %s: %v\nnotes %q\ncalls: %q\nshims: %q", rep.Result, err, rep.Notes, fs.e.Calls(), fs.log)
	return rep, err
}

func (fs *fakeSwitch) status(o supervisor.Options) *supervisor.Status {
	fs.t.Helper()
	s, err := supervisor.New(fs.e, o)
	if err != nil {
		fs.t.Fatal(err)
	}
	st, err := s.Status(context.Background())
	if err != nil {
		fs.t.Fatal(err)
	}
	return st
}

// upgraded checks the end state of a finished run: the new container of
// epoch 2 named teamd serves every LAG, no backup, the journal done.
func (fs *fakeSwitch) upgraded(o supervisor.Options) {
	fs.t.Helper()
	cs := fs.e.List()
	if len(cs) != 1 || cs[0].Name != "teamd" || cs[0].ID == fs.oldID || !cs[0].Running || epochOf(&cs[0]) != 2 {
		fs.t.Fatalf("containers after the run: %v, want the new teamd alone", names(cs))
	}
	st := fs.status(o)
	for _, l := range st.LAGs {
		if l.Epoch != 2 || l.ServedBy != "teamd" || !l.Alive || l.Problem != "" {
			fs.t.Errorf("status of %s: %+v", l.LAG, l)
		}
	}
	if st.Run == nil || st.Run.Stage != proto.JournalDone || st.Next != "" || len(st.Problems) > 0 {
		fs.t.Errorf("status after the run: run %+v, problems %q, next %q", st.Run, st.Problems, st.Next)
	}
	if s := cs[0].HostConfig.CPUShares; s != supervisor.DefaultCPUShares {
		fs.t.Errorf("the new teamd runs at %d CPU shares after the run, want %d", s, supervisor.DefaultCPUShares)
	}
}

// The journal is rewritten before each step, and ends done with the
// result.
func TestJournalFollowsTheRun(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1"})
	o := fs.options()
	var stages []string
	o.Progress = func(supervisor.Step) {
		rec, err := fs.dir.Read("", proto.KindJournal)
		if err != nil {
			return
		}
		if st := rec.(*proto.Journal).Stage; len(stages) == 0 || stages[len(stages)-1] != st {
			stages = append(stages, st)
		}
	}
	rep, err := fs.upgrade(context.Background(), o)
	if err != nil || rep.Result != supervisor.ResultOK {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	if want := []string{"a1", "a2", "a3", "b1", "b2", "c1"}; !slices.Equal(stages, want) {
		t.Errorf("journal stages seen %q, want %q", stages, want)
	}
	rec, err := fs.dir.Read("", proto.KindJournal)
	if err != nil {
		t.Fatal(err)
	}
	if j := rec.(*proto.Journal); j.Stage != proto.JournalDone || j.Result != "ok" || j.NewID == "" || j.RestartPolicy != "unless-stopped" || j.OldID != fs.oldID {
		t.Errorf("journal at the end: %+v", j)
	}
	fs.upgraded(o)
}

// A supervisor that dies leaves a journal that says where; status says so
// and gives the command; recover finishes a run past its cutover and
// undoes one before it; a second recover changes nothing; an upgrade is
// refused while a run is unfinished.
func TestRecoverAfterTheSupervisorDied(t *testing.T) {
	for _, tt := range []struct {
		name   string
		atStep func(supervisor.Step) bool
		atCall func(string, []string) bool
		stage  string
		undo   bool
	}{
		{name: "at a2", stage: "a2", undo: true,
			atStep: func(st supervisor.Step) bool { return strings.HasPrefix(st.Message, "started the new") }},
		{name: "at a3", stage: "a3", undo: true,
			atStep: func(st supervisor.Step) bool { return strings.HasPrefix(st.Message, "PortChannel2 ready") }},
		{name: "at b1, giving the new container its shares", stage: "b1", undo: true,
			atCall: givesSpeakingShares},
		{name: "between the cutover and SIGUSR1", stage: "b1",
			atCall: func(op string, args []string) bool { return op == "Kill" && slices.Equal(args, []string{"SIGUSR1"}) }},
		{name: "at b2", stage: "b2",
			atStep: func(st supervisor.Step) bool { return strings.HasPrefix(st.Message, "PortChannel1 taken over") }},
		{name: "at c1", stage: "c1",
			atCall: func(op string, _ []string) bool { return op == "Remove" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
			o := fs.options()
			fs.dies(o, tt.atStep, tt.atCall)

			st := fs.status(o)
			if st.Run == nil || !st.Run.Interrupted || st.Run.Stage != tt.stage || st.Next != "teamd-warm recover --dir "+o.Dir {
				t.Fatalf("status: run %+v, next %q: want interrupted at %s, and the recover command", st.Run, st.Next, tt.stage)
			}
			t.Logf("status: %+v", st)
			rep, err := fs.upgrade(context.Background(), o)
			if rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "did not end: it stopped at "+tt.stage) ||
				!strings.Contains(rep.Error, "teamd-warm recover") {
				t.Fatalf("an upgrade over the dead run: %s (%v), want refused naming recover", rep.Result, err)
			}

			rep, err = fs.recover(o)
			if tt.undo {
				if err == nil || rep.Result != supervisor.ResultRolledBack {
					t.Fatalf("recover: %s (%v), want rolled-back", rep.Result, err)
				}
				fs.restored()
			} else {
				if err != nil || rep.Result != supervisor.ResultOK {
					t.Fatalf("recover: %s (%v), want ok", rep.Result, err)
				}
				fs.upgraded(o)
			}
			calls := len(fs.e.Calls())
			rep, err = fs.recover(o)
			if err != nil || rep.Result != supervisor.ResultOK || !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.HasPrefix(n, "nothing to recover") }) {
				t.Fatalf("second recover: %s (%v), notes %q", rep.Result, err, rep.Notes)
			}
			if changed := slices.ContainsFunc(fs.e.Calls()[calls:], func(c string) bool {
				return !strings.HasPrefix(c, "Inspect") && !strings.HasPrefix(c, "Wait")
			}); changed {
				t.Errorf("the second recover changed something: %q", fs.e.Calls()[calls:])
			}
		})
	}
}

// A standby shim that dies after its record landed is not trusted at the
// cutover: the run waits for its container's init to restart it and for
// the restarted shim to be ready again; if that never comes, it rolls back.
func TestDeadStandbyIsNotTrusted(t *testing.T) {
	t.Run("restarted", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
		o := fs.options()
		restarted := false
		o.Progress = func(st supervisor.Step) {
			switch {
			case strings.HasPrefix(st.Message, "PortChannel2 ready"):
				fs.kill(fs.newID(), "PortChannel1")
			case strings.Contains(st.Message, "died after they were ready") && !restarted:
				restarted = true
				go func() {
					time.Sleep(50 * time.Millisecond) // init's restart
					c, _ := fs.e.Get(fs.newID())
					fs.live(&c, "PortChannel1", 2)
					fs.write(&proto.Standby{Schema: proto.SchemaVersion, LAG: "PortChannel1", Epoch: 2, Writer: fs.writer(&c),
						ConfigDigest: oldDigest, ReadyMono: nowMono(), Ready: time.Now()})
				}()
			}
		}
		rep, err := fs.upgrade(context.Background(), o)
		if err != nil || rep.Result != supervisor.ResultOK || !restarted {
			t.Fatalf("result %s (%v), restart seen %v", rep.Result, err, restarted)
		}
	})
	t.Run("never back", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
		o := fs.options()
		o.ReadyTimeout = 500 * time.Millisecond
		o.Progress = func(st supervisor.Step) {
			if strings.HasPrefix(st.Message, "PortChannel2 ready") {
				fs.kill(fs.newID(), "PortChannel1")
			}
		}
		rep, err := fs.upgrade(context.Background(), o)
		if rep.Result != supervisor.ResultRolledBack || !strings.Contains(rep.Error, "no standby record from PortChannel1") {
			t.Fatalf("result %s (%v), want rolled back for PortChannel1", rep.Result, err)
		}
		if slices.ContainsFunc(fs.e.Calls(), func(c string) bool { return strings.Contains(c, "SIGUSR1") }) {
			t.Error("the cutover was made with a dead standby")
		}
		fs.restored()
	})
}

// A paused new container is unpaused before the cutover: a frozen standby
// could not take over.
func TestPausedNewContainerIsUnpaused(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1"})
	o := fs.options()
	o.Progress = func(st supervisor.Step) {
		if strings.HasPrefix(st.Message, "PortChannel1 ready") {
			fs.e.Pause(fs.newID())
		}
	}
	rep, err := fs.upgrade(context.Background(), o)
	if err != nil || rep.Result != supervisor.ResultOK ||
		!slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "was paused during a3: unpaused it") }) {
		t.Fatalf("result %s (%v), warnings %q", rep.Result, err, rep.Warnings)
	}
	fs.upgraded(o)
}

// givesSpeakingShares matches the engine call that gives the new container
// the shares it keeps once its teamds speak: docker's default here, as the
// old container has none set.
func givesSpeakingShares(op string, args []string) bool {
	return op == "Update" && slices.Contains(args, fmt.Sprintf("cpu-shares=%d", supervisor.DefaultCPUShares))
}

// failoverWhenReady is a progress hook that, once lag's standby is ready,
// writes its .active of epoch 2 as a standby that took over on its own (its
// old speaker died) does.
func (fs *fakeSwitch) failoverWhenReady(lag string) func(supervisor.Step) {
	return func(st supervisor.Step) {
		if strings.HasPrefix(st.Message, lag+" ready") {
			c, _ := fs.e.Get(fs.newID())
			now := nowMono()
			fs.write(&proto.Active{Schema: proto.SchemaVersion, LAG: lag, Epoch: 2, Writer: fs.writer(&c), ConfigDigest: oldDigest,
				Path: proto.PathFailover, SinceMono: now, Since: time.Now(), Timings: proto.Timings{SignalSent: now, Confirmed: now + 1}})
		}
	}
}

// A run that died in a3 after a standby took its LAG over on its own, as
// it gave the new container its shares, is finished by recover, which
// gives them.
func TestRecoverGivesTheSpeakersTheirShares(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
	o := fs.options()
	fs.deafLAG = "PortChannel2"
	o.Progress = fs.failoverWhenReady("PortChannel1")
	fs.dies(o, nil, givesSpeakingShares)
	if c, _ := fs.e.Get(fs.newID()); c.HostConfig.CPUShares != supervisor.DefaultStandbyCPUShares {
		t.Fatalf("the run died with the new container at %d CPU shares; the test wants it at the standbys' %d", c.HostConfig.CPUShares, supervisor.DefaultStandbyCPUShares)
	}
	fs.deafLAG = ""
	o.Progress = nil
	fs.mu.Lock()
	fs.idle = nil
	fs.mu.Unlock()
	calls := len(fs.e.Calls())
	rep, err := fs.recover(o)
	if err != nil || rep.Result != supervisor.ResultOK {
		t.Fatalf("recover: %s (%v), want ok", rep.Result, err)
	}
	// It takes the container out of idle too, before the shares.
	c, _ := fs.e.Get(fs.newID())
	give := calls + slices.IndexFunc(fs.e.Calls()[calls:], func(c string) bool {
		f := strings.Fields(c)
		return givesSpeakingShares(f[0], f[1:])
	})
	fs.mu.Lock()
	idle := slices.Clone(fs.idle)
	fs.mu.Unlock()
	if len(idle) != 1 || idle[0].pid != c.Pid || idle[0].idle || idle[0].afterCalls > give {
		t.Errorf("recover's cgroup calls %+v; want pid %d out of idle before engine call %d (the shares)", idle, c.Pid, give)
	}
	fs.upgraded(o)
}

// A standby that took its LAG over on its own before the cutover (its old
// speaker died) is not undone when a3 fails for another LAG: the run goes
// on, since a rollback would silence that LAG. Its container gets its CPU
// shares as soon as its .active shows: that teamd speaks; if dockerd
// refuses them, the run still goes on.
func TestFailoverBeforeTheCutoverRollsForward(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("shares refused=%v", refuse), func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
			o := fs.options()
			o.ReadyTimeout = 400 * time.Millisecond
			fs.deafLAG = "PortChannel2" // its standby never gets ready: a3 fails
			if refuse {
				fs.e.Fail = func(op, _ string, args ...string) error {
					if givesSpeakingShares(op, args) {
						return errors.New("dockerd is restarting")
					}
					return nil
				}
			}
			raisedInA3 := false
			failover := fs.failoverWhenReady("PortChannel1")
			o.Progress = func(st supervisor.Step) {
				failover(st)
				if st.Stage == supervisor.StageReady && strings.Contains(st.Message, "runs at 1024 CPU shares from now on") &&
					strings.HasSuffix(st.Message, "PortChannel1 is served by it already") {
					raisedInA3 = true
				}
			}
			rep, err := fs.upgrade(context.Background(), o)
			if slices.ContainsFunc(fs.e.Calls(), func(c string) bool { return strings.HasPrefix(c, "Stop "+fs.newID()) }) {
				t.Fatalf("the new container was stopped: %q", fs.e.Calls())
			}
			if !slices.ContainsFunc(rep.Warnings, func(w string) bool {
				return strings.Contains(w, "PortChannel1 already served by the new teamd") && strings.Contains(w, "goes on instead of rolling back")
			}) {
				t.Fatalf("result %s (%v), warnings %q", rep.Result, err, rep.Warnings)
			}
			if rep.LAGs[0].Path != proto.PathFailover || rep.LAGs[0].Result != supervisor.LAGOK {
				t.Errorf("PortChannel1: %+v", rep.LAGs[0])
			}
			c, _ := fs.e.Get(fs.newID())
			switch {
			case !refuse && (!raisedInA3 || c.HostConfig.CPUShares != supervisor.DefaultCPUShares):
				t.Errorf("the new container's shares: raised in a3 %v, %d at the end; want raised when PortChannel1 was taken over, %d", raisedInA3, c.HostConfig.CPUShares, supervisor.DefaultCPUShares)
			case refuse && !slices.ContainsFunc(rep.Warnings, func(w string) bool {
				return strings.Contains(w, "dockerd is restarting; PortChannel1 already served by the new teamd, so the run goes on")
			}):
				t.Errorf("warnings %q do not tell of the refused shares at b1", rep.Warnings)
			}
		})
	}
}

// Preflight refuses a container that does not serve its LAGs.
func TestPreflightRefusesWhatDoesNotServe(t *testing.T) {
	t.Run("dead shims", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
		fs.kill(fs.oldID, "PortChannel2")
		rep, _ := fs.upgrade(context.Background(), fs.options())
		if rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "not running: PortChannel2 (epoch 1") {
			t.Fatalf("%s: %s", rep.Result, rep.Error)
		}
	})
	t.Run("no locks at all", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1"}, func(fs *fakeSwitch) { fs.noLocks = true })
		rep, err := fs.upgrade(context.Background(), fs.options())
		if err != nil || !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "hold no liveness lock") }) {
			t.Fatalf("%s (%v), notes %q", rep.Result, err, rep.Notes)
		}
	})
	t.Run("a standby waits already", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1"})
		c, _ := fs.e.Get(fs.oldID)
		fs.live(&c, "PortChannel1", 2)
		rep, _ := fs.upgrade(context.Background(), fs.options())
		if rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "standbys of epoch 2 already run for PortChannel1") {
			t.Fatalf("%s: %s", rep.Result, rep.Error)
		}
	})
	t.Run("a standby container", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1"})
		o := fs.options()
		// The run dies at a3; the operator removes teamd_bak and tries
		// again on the container named teamd, whose shims are standbys.
		fs.dies(o, func(st supervisor.Step) bool { return strings.HasPrefix(st.Message, "PortChannel1 ready") }, nil)
		if err := fs.e.ContainerRemove(context.Background(), fs.oldID, containerRemoveForce); err != nil {
			t.Fatal(err)
		}
		_ = fs.dir.Remove("", proto.KindJournal)
		rep, _ := fs.upgrade(context.Background(), o)
		if rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "started with the shims of epoch 2, but its LAGs are active at epoch 1") {
			t.Fatalf("%s: %s", rep.Result, rep.Error)
		}
	})
}

// newID is the ID of the container of epoch 2.
func (fs *fakeSwitch) newID() string {
	for _, c := range fs.e.List() {
		if epochOf(&c) == 2 {
			return c.ID
		}
	}
	fs.t.Fatal("no container of epoch 2")
	return ""
}

var containerRemoveForce = container.RemoveOptions{Force: true}

func nowMono() int64 { return monoclock.Now() }

// The new container stops just as the cutover is made: its shims are gone,
// the old ones refuse to hand over to nobody and serve on. Nothing was
// taken over, so the run is undone after its cutover: names, restart
// policy and records as before.
func TestNoTakerAfterTheCutoverIsUndone(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
	fs.ignoreUSR1 = true // as the old shims do when no standby runs
	o := fs.options()
	o.TakeoverTimeout = 500 * time.Millisecond
	o.Progress = func(st supervisor.Step) {
		if strings.HasPrefix(st.Message, "cutover written") {
			fs.e.Exit(fs.newID(), 0)
		}
	}
	rep, err := fs.upgrade(context.Background(), o)
	if rep.Result != supervisor.ResultRolledBack || !strings.Contains(rep.Error, "no LAG was taken over within 500ms of the cutover") {
		t.Fatalf("result %s (%v)", rep.Result, err)
	}
	fs.restored()
}

// dockerd finishes a create whose client was killed. The new container
// then holds the name with its ID in no journal, and until its create lands
// the name is taken with no container to show for it. Recover removes it,
// once it shows, and gives the old container its name back.
func TestRecoverRemovesTheCreateTheRunDidNotRecord(t *testing.T) {
	for _, tt := range []struct {
		name   string
		hidden int // renames before the new container shows: its create in flight
	}{
		{name: "landed"},
		{name: "in flight", hidden: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
			o := fs.options()
			fs.e.Created = func(c *enginetest.Container) { runtime.Goexit() }
			fs.dies(o, nil, nil)
			fs.e.Created = nil
			if st := fs.status(o); st.Run == nil || !st.Run.Interrupted || st.Run.Stage != "a2" {
				t.Fatalf("status: run %+v: want interrupted at a2", st.Run)
			}
			if rec, err := fs.dir.Read("", proto.KindJournal); err != nil || rec.(*proto.Journal).NewID != "" {
				t.Fatalf("journal %+v (%v): want no new container in it", rec, err)
			}
			var renames atomic.Int32
			fs.e.Fail = func(op, target string, args ...string) error {
				switch {
				case op == "Rename":
					renames.Add(1)
				case op == "Inspect" && target == "teamd" && int(renames.Load()) < tt.hidden:
					return fmt.Errorf("no such container: %s: %w", target, cerrdefs.ErrNotFound)
				}
				return nil
			}
			rep, err := fs.recover(o)
			if err == nil || rep.Result != supervisor.ResultRolledBack {
				t.Fatalf("recover: %s (%v), want rolled-back", rep.Result, err)
			}
			fs.restored()
		})
	}
}
