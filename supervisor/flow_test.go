package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/teamdwarm/teamdwarm/internal/sys/cgroup"
	"github.com/teamdwarm/teamdwarm/internal/sys/inotify"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/internal/sys/ofdlock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor"
	"github.com/teamdwarm/teamdwarm/supervisor/enginetest"
	"github.com/teamdwarm/teamdwarm/teamd"
)

var _ supervisor.Engine = (*enginetest.Engine)(nil)

// fakeSwitch is a switch on the fake engine: a running "teamd" container
// whose stand-in shims keep their records in a real record directory, as
// teamdwarm's shims do. Its knobs make them misbehave.
type fakeSwitch struct {
	t        *testing.T
	e        *enginetest.Engine
	dir      *statefile.Dir
	warmboot string
	lags     []string
	oldID    string
	// entrypoint of both images; teamd-shim init if nil
	entrypoint []string
	silent     []string // LAGs whose teamd does not answer

	// Knobs, set before the run.
	deaf        bool   // new containers never get ready
	changed     string // this LAG's new standby runs another config
	deafLAG     string // this LAG's new standby never gets ready
	exitAtStart int    // a new container exits at once with this code (0: it does not)
	ignoreUSR1  bool   // the old container does not hand over on SIGUSR1
	oldExit     int    // the old container's exit code after its handoff
	noTakeover  bool   // the new shims never write .active
	onUSR1      func() // called when the old container gets SIGUSR1
	profile     string // the old shims' teamd profile ("" = not said)
	noLocks     bool   // the old shims hold no liveness locks (an earlier teamdwarm)

	noIdle    bool  // the kernel has no cpu.idle
	idleError error // marking a cgroup idle or not fails so

	mu    sync.Mutex
	log   []string                   // what the stand-in shims did; guarded by mu
	locks map[string][]*ofdlock.Lock // container ID -> its shims' liveness locks; guarded by mu
	idle  []idleCall                 // Options.CPUIdle's calls; guarded by mu
}

// idleCall is one call of Options.CPUIdle: which process, to what, and how
// many engine calls had been made before it.
type idleCall struct {
	pid        int
	idle       bool
	afterCalls int
}

// cpuIdle is the switch's Options.CPUIdle: it records the call.
func (fs *fakeSwitch) cpuIdle(pid int, idle bool) error {
	if fs.noIdle {
		return fmt.Errorf("/sys/fs/cgroup/cpu/docker/x: %w", cgroup.ErrNoIdle)
	}
	if fs.idleError != nil {
		return fs.idleError
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.idle = append(fs.idle, idleCall{pid: pid, idle: idle, afterCalls: len(fs.e.Calls())})
	return nil
}

const oldDigest = "sha256:0123"

// newSwitch builds the switch with these LAGs; knobs are set before its
// first container starts.
func newSwitch(t *testing.T, lags []string, knobs ...func(*fakeSwitch)) *fakeSwitch {
	t.Helper()
	fs := &fakeSwitch{t: t, e: enginetest.New(), warmboot: t.TempDir(), lags: lags}
	for _, k := range knobs {
		k(fs)
	}
	var err error
	if fs.dir, err = statefile.OpenDir(filepath.Join(fs.warmboot, "teamdwarm")); err != nil {
		t.Fatal(err)
	}
	if fs.entrypoint == nil {
		fs.entrypoint = []string{"/usr/bin/teamd-shim", "init"}
	}
	img := &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		Env: []string{"PATH=/usr/bin"}, Entrypoint: fs.entrypoint}}
	fs.e.AddImage("teamd:v1", img)
	fs.e.AddImage("teamd:v2", img)
	fs.locks = map[string][]*ofdlock.Lock{}
	fs.e.Start = fs.start
	fs.e.Signal = fs.signal
	fs.e.Exec = fs.exec
	fs.e.Exited = fs.exited
	ctx := context.Background()
	c, err := fs.e.ContainerCreate(ctx, &container.Config{Image: "teamd:v1", Env: []string{"SONIC=1"}},
		&container.HostConfig{Binds: []string{fs.warmboot + ":/var/warmboot"}, CapAdd: []string{"NET_ADMIN"},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}}, nil, nil, "teamd")
	if err != nil {
		t.Fatal(err)
	}
	fs.oldID = c.ID
	if err := fs.e.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return fs
}

// epochOf is the epoch a container's shims run at: its environment's, or 1.
func epochOf(c *enginetest.Container) uint64 {
	for _, kv := range c.Config.Env {
		if v, ok := strings.CutPrefix(kv, proto.EnvEpoch+"="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 1
}

func (fs *fakeSwitch) did(format string, args ...any) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.log = append(fs.log, fmt.Sprintf(format, args...))
}

func (fs *fakeSwitch) write(rec proto.Record) {
	if _, err := fs.dir.Write(rec); err != nil {
		fs.t.Errorf("stand-in shim: %v", err)
	}
}

func (fs *fakeSwitch) writer(c *enginetest.Container) proto.Process {
	return proto.Process{Container: c.Name, Hostname: c.ID[:12], PID: c.Pid}
}

// live takes a stand-in shim's liveness lock for the container's life.
func (fs *fakeSwitch) live(c *enginetest.Container, lag string, epoch uint64) {
	l, err := fs.dir.Live(lag, epoch, fmt.Sprintf("stand-in shim of %s in %.12s", lag, c.ID))
	if err != nil {
		fs.t.Errorf("stand-in shim: %v", err)
		return
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.locks[c.ID] = append(fs.locks[c.ID], l)
}

// kill plays the death of the stand-in shim of lag in container id: its
// liveness lock goes, its records stay.
func (fs *fakeSwitch) kill(id, lag string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.locks[id] = slices.DeleteFunc(fs.locks[id], func(l *ofdlock.Lock) bool {
		if strings.Contains(filepath.Base(l.Path()), "."+lag+".") {
			l.Release(false)
			return true
		}
		return false
	})
	fs.log = append(fs.log, "shim of "+lag+" killed")
}

// exited: a stopped container's shims are gone, and their locks with them.
func (fs *fakeSwitch) exited(c *enginetest.Container) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, l := range fs.locks[c.ID] {
		l.Release(false)
	}
	delete(fs.locks, c.ID)
}

// start plays a container's shims coming up: the first container's are
// active at epoch 1; a new one's write their .standby once "ready".
func (fs *fakeSwitch) start(c *enginetest.Container) {
	epoch := epochOf(c)
	if epoch == 1 {
		for _, lag := range fs.lags {
			a := &proto.Active{Schema: proto.SchemaVersion, LAG: lag, Epoch: 1, Writer: fs.writer(c), ConfigDigest: oldDigest,
				Path: proto.PathCold, SinceMono: monoclock.Now(), Since: time.Now(), Members: []string{"Ethernet0", "Ethernet4"}}
			if fs.profile != "" {
				a.Teamd = &proto.TeamdInfo{Program: "/usr/bin/teamd.real", Version: "teamd 1.31", Profile: fs.profile}
			}
			if !fs.noLocks {
				fs.live(c, lag, 1)
			}
			fs.write(a)
		}
		return
	}
	if fs.exitAtStart != 0 {
		fs.e.Logf(c.ID, "teamd-shim: PortChannel1: in state starting: teamd exited (exit status 1)")
		fs.e.Exit(c.ID, fs.exitAtStart)
		return
	}
	if fs.deaf {
		return
	}
	for _, lag := range fs.lags {
		digest := oldDigest
		if lag == fs.changed {
			digest = "sha256:4567"
		}
		if lag == fs.deafLAG {
			continue
		}
		fs.live(c, lag, epoch)
		fs.write(&proto.Standby{Schema: proto.SchemaVersion, LAG: lag, Epoch: epoch, Writer: fs.writer(c), ConfigDigest: digest,
			ReadyMono: monoclock.Now(), Ready: time.Now()})
	}
	fs.did("standbys of epoch %d ready", epoch)
}

// signal plays what the shims do on a signal to their container's PID 1.
func (fs *fakeSwitch) signal(c *enginetest.Container, sig string) {
	epoch := epochOf(c)
	switch sig {
	case "SIGUSR1":
		if fs.onUSR1 != nil {
			fs.onUSR1()
		}
		if fs.ignoreUSR1 {
			return
		}
		for _, lag := range fs.lags {
			now := monoclock.Now()
			fs.write(&proto.Snapshot{Schema: proto.SchemaVersion, LAG: lag, Epoch: epoch, Writer: fs.writer(c), ConfigDigest: oldDigest,
				TeamdStop: "exit status 0", TakenMono: now, Taken: time.Now(), Members: []proto.Member{
					{Name: "Ethernet0", State: "current", LastTxMono: now}, {Name: "Ethernet4", State: "current", LastTxMono: now}}})
		}
		fs.did("epoch %d handed over", epoch)
		fs.takeOver(epoch+1, proto.PathSnapshot)
		fs.e.Exit(c.ID, fs.oldExit)
	case "SIGKILL":
		fs.e.Exit(c.ID, 137)
		fs.did("epoch %d killed", epoch)
		// The standbys see no snapshot and take over on their deadline.
		if _, err := fs.dir.Read("", proto.KindCutover); err == nil {
			fs.takeOver(epoch+1, proto.PathDeadline)
		}
	case "SIGTERM":
		for _, lag := range fs.lags {
			if rec, err := fs.dir.Read(lag, proto.KindStandby); err == nil && rec.RecordEpoch() == epoch {
				_ = fs.dir.Remove(lag, proto.KindStandby)
			}
		}
		fs.e.Exit(c.ID, 0)
	}
}

// takeOver writes, for the running container of epoch, every LAG's .active.
func (fs *fakeSwitch) takeOver(epoch uint64, path proto.Path) {
	if fs.noTakeover || fs.deaf {
		return
	}
	for _, c := range fs.e.List() {
		if !c.Running || epochOf(&c) != epoch {
			continue
		}
		for _, lag := range fs.lags {
			if rec, err := fs.dir.Read(lag, proto.KindActive); err == nil && rec.RecordEpoch() == epoch {
				continue // took over before (a failover)
			}
			now := monoclock.Now()
			a := &proto.Active{Schema: proto.SchemaVersion, LAG: lag, Epoch: epoch, Writer: fs.writer(&c), ConfigDigest: oldDigest,
				Path: path, SinceMono: now, Since: time.Now(), Timings: proto.Timings{SignalSent: now, Confirmed: now + int64(time.Millisecond)},
				Members: []string{"Ethernet0", "Ethernet4"}}
			if path == proto.PathSnapshot {
				a.FromEpoch = epoch - 1
			}
			fs.write(a)
		}
		_ = fs.dir.Remove("", proto.KindStandby)
		fs.did("epoch %d took over (%s)", epoch, path)
	}
}

// exec answers "teamdctl <lag> state dump" as a teamd whose two members
// hear the partner.
func (fs *fakeSwitch) exec(c *enginetest.Container, cmd []string) (string, string, int) {
	if len(cmd) >= 3 && cmd[0] == "/usr/bin/teamd-shim" && cmd[1] == "dump" {
		// As teamd-shim dump answers: every LAG's dump, or its error.
		out := proto.StateDumps{Dumps: map[string]json.RawMessage{}, Errors: map[string]string{}}
		for _, lag := range cmd[2:] {
			if !slices.Contains(fs.lags, lag) || slices.Contains(fs.silent, lag) {
				out.Errors[lag] = "dial unix /var/run/teamd/" + lag + ".sock: connect: no such file or directory"
				continue
			}
			out.Dumps[lag] = fs.stateDump()
		}
		b, _ := json.Marshal(out)
		return string(b), "", 0
	}
	if len(cmd) != 4 || cmd[0] != "teamdctl" || cmd[2] != "state" || !slices.Contains(fs.lags, cmd[1]) {
		return "", "teamdctl: unexpected " + strings.Join(cmd, " "), 1
	}
	if slices.Contains(fs.silent, cmd[1]) {
		return "", "teamdctl: connect: no such file or directory", 1
	}
	return string(fs.stateDump()), "", 0
}

// stateDump is a LAG's teamd StateDump: two members, current, selected.
func (fs *fakeSwitch) stateDump() []byte {
	st := teamd.State{Runner: teamd.RunnerState{Active: true, FastRate: true}, Ports: map[string]teamd.Port{}}
	for _, p := range []string{"Ethernet0", "Ethernet4"} {
		st.Ports[p] = teamd.Port{Runner: teamd.PortRunner{State: "current", Selected: true}}
	}
	b, _ := json.Marshal(st)
	return b
}

func (fs *fakeSwitch) options() supervisor.Options {
	return supervisor.Options{Image: "teamd:v2", Dir: fs.dir.Path(), ReadyTimeout: 2 * time.Second,
		Deadline: 200 * time.Millisecond, TakeoverTimeout: 2 * time.Second, ExitTimeout: 2 * time.Second, StopTimeout: time.Second,
		InotifyUsage: func() (inotify.Usage, error) {
			return inotify.Usage{Instances: 10, Watches: 10, MaxInstances: 128, MaxWatches: 8192}, nil
		},
		CPUIdle: fs.cpuIdle}
}

func (fs *fakeSwitch) upgrade(ctx context.Context, o supervisor.Options) (*supervisor.Report, error) {
	fs.t.Helper()
	s, err := supervisor.New(fs.e, o)
	if err != nil {
		fs.t.Fatal(err)
	}
	rep, err := s.Upgrade(ctx, supervisor.OpUpgrade)
	if rep == nil {
		fs.t.Fatalf("no report (err %v)", err)
	}
	fs.t.Logf("result %s: %v\ncalls: %q\nshims: %q", rep.Result, err, fs.e.Calls(), fs.log)
	return rep, err
}

// restored checks that the old container serves as before the run: named
// teamd, running, its restart policy back, no backup, no new container,
// and no record of the run but the .actives of epoch 1.
func (fs *fakeSwitch) restored() {
	fs.t.Helper()
	cs := fs.e.List()
	if len(cs) != 1 || cs[0].ID != fs.oldID || cs[0].Name != "teamd" || !cs[0].Running {
		fs.t.Fatalf("containers after the rollback: %+v", names(cs))
	}
	if rp := cs[0].HostConfig.RestartPolicy.Name; rp != container.RestartPolicyUnlessStopped {
		fs.t.Errorf("restart policy %q after the rollback, want unless-stopped", rp)
	}
	es, err := statefile.List(fs.dir.Path())
	if err != nil {
		fs.t.Fatal(err)
	}
	for _, e := range es {
		switch {
		case e.Kind == proto.KindJournal:
			if j, ok := e.Record.(*proto.Journal); !ok || j.Stage != proto.JournalDone || j.Result != string(supervisor.ResultRolledBack) {
				fs.t.Errorf("the journal after the rollback: %+v (%v), want done, rolled-back", e.Record, e.Err)
			}
		case e.Kind != proto.KindActive || e.Record == nil || e.Record.RecordEpoch() != 1:
			fs.t.Errorf("record left after the rollback: %s", e.Name)
		}
	}
}

func names(cs []enginetest.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s(%.8s running=%v exit=%d)", c.Name, c.ID, c.Running, c.ExitCode))
	}
	return out
}

func TestUpgradeHandsEveryLAGOver(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
	rep, err := fs.upgrade(context.Background(), fs.options())
	if err != nil || rep.Result != supervisor.ResultOK {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	cs := fs.e.List()
	if len(cs) != 1 || cs[0].Name != "teamd" || cs[0].Image != "teamd:v2" || !cs[0].Running {
		t.Fatalf("containers after the upgrade: %v", names(cs))
	}
	// The operator's settings came along; the shims got their role.
	nc := cs[0]
	if !slices.Contains(nc.Config.Env, "SONIC=1") || !slices.Contains(nc.Config.Env, proto.EnvRole+"=standby") ||
		!slices.Contains(nc.Config.Env, proto.EnvEpoch+"=2") {
		t.Errorf("new container's environment: %q", nc.Config.Env)
	}
	if nc.HostConfig.RestartPolicy.Name != container.RestartPolicyUnlessStopped || !slices.Equal(nc.HostConfig.CapAdd, []string{"NET_ADMIN"}) {
		t.Errorf("new container's host config: %+v", nc.HostConfig)
	}
	for _, l := range rep.LAGs {
		if l.Result != supervisor.LAGOK || l.Path != proto.PathSnapshot || len(l.Members) != 2 || l.Members[0].GapFrom != "last-pdu" {
			t.Errorf("%s: %+v", l.LAG, l)
		}
	}
	if rep.FromEpoch != 1 || rep.ToEpoch != 2 {
		t.Errorf("epochs %d -> %d", rep.FromEpoch, rep.ToEpoch)
	}
}

// Whatever fails before the cutover is undone: the old container serves,
// as it did, and the report says where and why.
func TestRollbackBeforeTheCutover(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(fs *fakeSwitch, o *supervisor.Options, cancel context.CancelFunc)
		stage supervisor.Stage
		want  string
	}{
		{"never ready", func(fs *fakeSwitch, o *supervisor.Options, _ context.CancelFunc) {
			fs.deaf, o.ReadyTimeout = true, 300*time.Millisecond
		}, supervisor.StageReady, "not ready within 300ms: no standby record from PortChannel1 PortChannel2"},
		{"config changed", func(fs *fakeSwitch, _ *supervisor.Options, _ context.CancelFunc) {
			fs.changed = "PortChannel2"
		}, supervisor.StageReady, "the configuration of PortChannel2 changed (sha256:4567, was sha256:0123)"},
		{"new container exits", func(fs *fakeSwitch, _ *supervisor.Options, _ context.CancelFunc) {
			fs.exitAtStart = 1
		}, supervisor.StageReady, "exited (code 1) before every LAG was ready; its log ends:\nteamd-shim: PortChannel1"},
		{"create refused", func(fs *fakeSwitch, _ *supervisor.Options, _ context.CancelFunc) {
			fs.e.Fail = func(op, _ string, _ ...string) error {
				if op == "Create" {
					return errors.New("no space left on device")
				}
				return nil
			}
		}, supervisor.StageStart, "create the new teamd: no space left on device"},
		{"interrupted at a3", func(fs *fakeSwitch, o *supervisor.Options, cancel context.CancelFunc) {
			fs.deaf = true
			o.Progress = func(st supervisor.Step) {
				if st.Stage == supervisor.StageStart && strings.Contains(st.Message, "started the new") {
					cancel()
				}
			}
		}, supervisor.StageReady, "interrupted before the cutover"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
			o := fs.options()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.setup(fs, &o, cancel)
			rep, err := fs.upgrade(ctx, o)
			if rep.Result != supervisor.ResultRolledBack || supervisor.ResultOf(err) != supervisor.ResultRolledBack {
				t.Fatalf("result %s: %v", rep.Result, err)
			}
			if rep.Stage != tt.stage || !strings.Contains(rep.Error, tt.want) {
				t.Fatalf("failed at %s with %q; want %s with %q", rep.Stage, rep.Error, tt.stage, tt.want)
			}
			fs.e.Fail = nil
			fs.restored()
		})
	}
}

// A rollback whose undo fails says so, names what could not be undone, and
// still does the rest.
func TestRollbackThatFails(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1"})
	fs.deaf = true
	o := fs.options()
	o.ReadyTimeout = 200 * time.Millisecond
	fs.e.Fail = func(op, _ string, args ...string) error {
		if op == "Rename" && len(args) == 1 && args[0] == "teamd" {
			return errors.New("dockerd is restarting")
		}
		return nil
	}
	rep, err := fs.upgrade(context.Background(), o)
	if rep.Result != supervisor.ResultRollbackFailed || !strings.Contains(rep.Error, "rename teamd_bak back to teamd: dockerd is restarting") {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	cs := fs.e.List()
	if len(cs) != 1 || cs[0].ID != fs.oldID || cs[0].Name != "teamd_bak" || !cs[0].Running {
		t.Fatalf("containers: %v (want only the old one, running, still named teamd_bak)", names(cs))
	}
	if rp := cs[0].HostConfig.RestartPolicy.Name; rp != container.RestartPolicyUnlessStopped {
		t.Errorf("the restart policy was not restored: %q", rp)
	}
}

// If SIGUSR1 cannot be delivered, the old container is killed, so that two
// speakers never coexist, and the standbys take over on their deadline.
func TestSIGUSR1FailsOldContainerKilled(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
	fs.e.Fail = func(op, _ string, args ...string) error {
		if op == "Kill" && len(args) == 1 && args[0] == "SIGUSR1" {
			return errors.New("cannot kill container: permission denied")
		}
		return nil
	}
	rep, err := fs.upgrade(context.Background(), fs.options())
	// Every LAG is served by the new container: the run is ok, and the
	// old one's end (the supervisor's own SIGKILL) is a warning.
	if err != nil || rep.Result != supervisor.ResultOK ||
		!slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "teamd_bak exited 137 after the handoff") }) {
		t.Fatalf("result %s (%v), warnings %q: want ok, warning of exit 137", rep.Result, err, rep.Warnings)
	}
	if !slices.Contains(fs.e.Calls(), "Kill "+fs.oldID+" SIGKILL") {
		t.Errorf("the old container was not killed: %q", fs.e.Calls())
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "SIGUSR1 to teamd_bak failed") }) {
		t.Errorf("notes %q do not tell of the failed SIGUSR1", rep.Notes)
	}
	for _, l := range rep.LAGs {
		if l.Path != proto.PathDeadline || l.Members[0].GapFrom != "cutover" {
			t.Errorf("%s: path %s, gap from %s; want deadline, from the cutover", l.LAG, l.Path, l.Members[0].GapFrom)
		}
	}
}

// c1: an old container that does not exit is killed and removed, one that
// exits badly is removed too, and the run, whose LAGs are all served, is
// ok with a warning that says what happened (and the end of its log).
func TestRetireTheOldContainer(t *testing.T) {
	t.Run("does not exit", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1"})
		o := fs.options()
		o.ExitTimeout = 100 * time.Millisecond
		// Hands over but its PID 1 stays, until SIGKILL.
		fs.e.Signal = func(c *enginetest.Container, sig string) {
			switch sig {
			case "SIGUSR1":
				fs.takeOver(2, proto.PathSnapshot)
			case "SIGKILL":
				fs.e.Exit(c.ID, 137)
			}
		}
		rep, err := fs.upgrade(context.Background(), o)
		if err != nil || rep.Result != supervisor.ResultOK || !slices.ContainsFunc(rep.Warnings, func(w string) bool {
			return strings.Contains(w, "teamd_bak did not exit within 100ms of the cutover and was killed (exit 137)")
		}) {
			t.Fatalf("result %s (%v), warnings %q", rep.Result, err, rep.Warnings)
		}
		if !slices.Contains(fs.e.Calls(), "Kill "+fs.oldID+" SIGKILL") {
			t.Errorf("the old container was not killed: %q", fs.e.Calls())
		}
		if _, ok := fs.e.Get(fs.oldID); ok {
			t.Error("the killed old container was not removed")
		}
	})
	t.Run("exits badly", func(t *testing.T) {
		fs := newSwitch(t, []string{"PortChannel1"})
		fs.oldExit = 3
		fs.onUSR1 = func() { fs.e.Logf(fs.oldID, "init: 1 of 2 LAGs failed: PortChannel2 (exit 137)") }
		rep, err := fs.upgrade(context.Background(), fs.options())
		if err != nil || rep.Result != supervisor.ResultOK || len(rep.Warnings) != 1 ||
			!strings.Contains(rep.Warnings[0], "teamd_bak exited 3 after the handoff; its log ends:\ninit: 1 of 2 LAGs failed") {
			t.Fatalf("result %s (%v), warnings %q", rep.Result, err, rep.Warnings)
		}
		if _, ok := fs.e.Get(fs.oldID); ok {
			t.Error("the old container was not removed")
		}
		var text strings.Builder
		_ = rep.WriteText(&text)
		if !strings.Contains(text.String(), "warning: teamd_bak exited 3") {
			t.Errorf("the text report hides the warning:\n%s", text.String())
		}
	})
}

// Past the cutover an interrupt is shown and ignored: every LAG is still
// followed to its new speaker.
func TestInterruptPastTheCutoverIsIgnored(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs.onUSR1 = cancel
	o := fs.options()
	var steps []string
	var mu sync.Mutex
	o.Progress = func(st supervisor.Step) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, string(st.Stage)+" "+st.Message)
	}
	rep, err := fs.upgrade(ctx, o)
	if err != nil || rep.Result != supervisor.ResultOK {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(steps, func(s string) bool { return strings.HasPrefix(s, "interrupt ") }) {
		t.Errorf("the ignored interrupt is not shown: %q", steps)
	}
}

// A LAG that nobody takes over fails the run; the old container is kept.
func TestNoTakeover(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1"})
	fs.noTakeover = true
	o := fs.options()
	o.TakeoverTimeout = 300 * time.Millisecond
	rep, err := fs.upgrade(context.Background(), o)
	if rep.Result != supervisor.ResultFailed || !strings.Contains(rep.Error, "PortChannel1 (no-takeover)") {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	if rep.LAGs[0].Result != supervisor.LAGNoTakeover {
		t.Errorf("LAG result %q", rep.LAGs[0].Result)
	}
	if _, ok := fs.e.Get("teamd_bak"); !ok {
		t.Error("the old container was removed; it should be kept for its logs")
	}
}

// While b2 waits, it names the LAGs not taken over, says so when the new
// container stopped (its standbys take nothing over; a run at a switch's
// size then waits out its bound) and how long the wait may last; then the
// old container, which kept every LAG, is the switch again.
func TestTakeoverWaitSaysWhatFor(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
	fs.ignoreUSR1 = true // the old shims keep their LAGs: no standby runs
	fs.onUSR1 = func() {
		for _, c := range fs.e.List() {
			if c.Running && epochOf(&c) == 2 {
				fs.e.Exit(c.ID, 143)
			}
		}
	}
	o := fs.options()
	o.TakeoverTimeout, o.WaitingEvery = 600*time.Millisecond, 100*time.Millisecond
	var mu sync.Mutex
	var waits []string
	o.Progress = func(st supervisor.Step) {
		mu.Lock()
		defer mu.Unlock()
		if st.Stage == supervisor.StageTakeover && strings.HasPrefix(st.Message, "waiting for ") {
			waits = append(waits, st.Message)
		}
	}
	rep, err := fs.upgrade(context.Background(), o)
	if rep.Result != supervisor.ResultRolledBack {
		t.Fatalf("result %s (%v), want rolled-back", rep.Result, err)
	}
	fs.restored()
	mu.Lock()
	defer mu.Unlock()
	if len(waits) == 0 {
		t.Fatal("b2 waited without saying what for")
	}
	for _, want := range []string{"waiting for PortChannel1 PortChannel2 (0/2 taken over)",
		"the new teamd is exited (exit code 143): its standbys take nothing over", "the takeovers' bound ends in "} {
		if !strings.Contains(waits[0], want) {
			t.Errorf("b2's waiting line %q does not say %q", waits[0], want)
		}
	}
}

// A run that would exhaust root's inotify instances is refused with the
// numbers, before anything changes: a standby that cannot watch never
// takes its LAG over.
func TestPreflightRefusesWithoutInotifyInstances(t *testing.T) {
	for _, tc := range []struct {
		name     string
		init     bool // the old container runs teamd-shim init
		used     int
		refused  bool
		contains string
	}{
		{"init, room for it", true, 126, false, ""},
		{"init, one short", true, 127, true, "needs 2 inotify instances and watches (1 for teamd-warm and 1 for the new container's teamd-shim init), but root has 1 of 128 instances"},
		{"one per shim, one short", false, 126, true, "needs 3 inotify instances and watches (1 for teamd-warm and 1 per LAG (2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"}, func(fs *fakeSwitch) {
				if !tc.init {
					fs.entrypoint = []string{"/usr/bin/supervisord"}
				}
			})
			o := fs.options()
			o.InotifyUsage = func() (inotify.Usage, error) {
				return inotify.Usage{Instances: tc.used, Watches: tc.used, MaxInstances: 128, MaxWatches: 8192}, nil
			}
			rep, err := fs.upgrade(context.Background(), o)
			if refused := rep.Result == supervisor.ResultRefused; refused != tc.refused || !strings.Contains(rep.Error, tc.contains) {
				t.Fatalf("result %s (%v), want refused %v saying %q", rep.Result, err, tc.refused, tc.contains)
			}
		})
	}
}

// Preflight asks every teamd in one exec of the old container's
// teamd-shim (or, in a container that does not run it, with teamdctl LAG
// by LAG), and refuses a LAG whose teamd does not answer, by name.
func TestPreflightAsksEveryTeamd(t *testing.T) {
	for _, tc := range []struct {
		name       string
		entrypoint []string
		want       string // the exec's command
	}{
		{"teamd-shim init", nil, "/usr/bin/teamd-shim dump PortChannel1 PortChannel2 PortChannel3"},
		{"another init", []string{"/usr/bin/supervisord"}, "teamdctl PortChannel3 state dump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2", "PortChannel3"}, func(fs *fakeSwitch) {
				fs.entrypoint, fs.silent = tc.entrypoint, []string{"PortChannel2"}
			})
			rep, err := fs.upgrade(context.Background(), fs.options())
			if rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "PortChannel2: its teamd does not answer") ||
				strings.Contains(rep.Error, "PortChannel1") || strings.Contains(rep.Error, "PortChannel3") {
				t.Fatalf("result %s: %v", rep.Result, err)
			}
			if !slices.ContainsFunc(fs.e.Calls(), func(c string) bool { return strings.Contains(c, tc.want) }) {
				t.Errorf("no exec of %q in %q", tc.want, fs.e.Calls())
			}
		})
	}
}

// A LAG whose teamd cannot stop warm is refused in preflight, by name, and
// nothing is changed: handing it over would mean killing its teamd.
func TestPreflightRefusesTeamdWithoutWarmStop(t *testing.T) {
	fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"}, func(fs *fakeSwitch) { fs.profile = "stock" })
	setup := len(fs.e.Calls())
	rep, err := fs.upgrade(context.Background(), fs.options())
	if rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "2 LAGs are served by a teamd that cannot stop warm") ||
		!strings.Contains(rep.Error, "PortChannel1 (/usr/bin/teamd.real teamd 1.31: stock teamd") {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	if len(rep.LAGs) != 2 || rep.LAGs[0].Teamd != "stock" {
		t.Errorf("the report's LAGs: %+v", rep.LAGs)
	}
	if calls := fs.e.Calls()[setup:]; slices.ContainsFunc(calls, func(c string) bool {
		return strings.HasPrefix(c, "Rename") || strings.HasPrefix(c, "Create") || strings.HasPrefix(c, "Kill")
	}) {
		t.Errorf("preflight changed something: %q", calls)
	}
}

// The cutover asks the old container for waves when it has more LAGs than
// the handover window, in the LAGs' order; with no more, all at once.
func TestCutoverAsksForWaves(t *testing.T) {
	for _, tc := range []struct {
		window, want int
	}{{2, 2}, {3, 0}, {0, 0}} { // 0: the default window, larger than 3
		t.Run(fmt.Sprint(tc.window), func(t *testing.T) {
			lags := []string{"PortChannel1", "PortChannel2", "PortChannel10"}
			fs := newSwitch(t, lags)
			var cut *proto.Cutover
			fs.onUSR1 = func() {
				rec, err := fs.dir.Read("", proto.KindCutover)
				if err != nil {
					t.Errorf("no cutover when SIGUSR1 reached the old container: %v", err)
					return
				}
				cut = rec.(*proto.Cutover)
			}
			o := fs.options()
			o.HandoverWindow = tc.window
			if rep, err := fs.upgrade(context.Background(), o); err != nil {
				t.Fatalf("result %s: %v", rep.Result, err)
			}
			if cut == nil || cut.Window != tc.want {
				t.Fatalf("cutover %+v, want window %d", cut, tc.want)
			}
			if want := []string{"PortChannel1", "PortChannel2", "PortChannel10"}; !slices.Equal(cut.LAGs, want) {
				t.Errorf("the waves' order %q, want %q", cut.LAGs, want)
			}
		})
	}
}

// checkIdle checks that the new container, whose init is pid, was marked
// idle at its start and left idle before its shares were given, if marked
// says so; else that no cgroup was marked.
func (fs *fakeSwitch) checkIdle(t *testing.T, marked bool, pid int) {
	t.Helper()
	fs.mu.Lock()
	calls := slices.Clone(fs.idle)
	fs.mu.Unlock()
	if !marked {
		if len(calls) != 0 {
			t.Errorf("cgroups marked idle or not: %+v, want none", calls)
		}
		return
	}
	give := slices.IndexFunc(fs.e.Calls(), func(c string) bool {
		return strings.HasPrefix(c, "Update ") && !strings.HasPrefix(c, "Update "+fs.oldID) && strings.Contains(c, "cpu-shares=")
	})
	if len(calls) != 2 || calls[0].pid != pid || !calls[0].idle || calls[1].pid != pid || calls[1].idle || calls[1].afterCalls > give {
		t.Errorf("cgroups marked idle or not: %+v; want pid %d idle, then not idle before engine call %d (the shares)", calls, pid, give)
	}
}

// The standbys stand up at the least CPU shares and idle, behind the old
// teamds; the new container leaves idle and gets the old one's shares
// before the cutover is written, or docker's default if the old one had
// none. A refusal rolls the run back; a kernel without cpu.idle leaves the
// shares alone to rank the standbys.
func TestStandbysStandUpAtTheLeastCPUShares(t *testing.T) {
	for _, tt := range []struct {
		name      string
		old       int64 // the old container's shares; 0: none set
		standby   int64 // Options.StandbyCPUShares
		lowered   bool  // whether the standbys ran at fewer shares
		want      int64 // the new container's after the run
		refuse    bool  // the update is refused
		noIdle    bool  // the kernel has no cpu.idle
		idleError error // leaving idle fails so
		wantError string
	}{
		{name: "old has none", want: supervisor.DefaultCPUShares, lowered: true},
		{name: "old has its own", old: 512, want: 512, lowered: true},
		{name: "old has the least already", old: 2, want: 2},
		{name: "turned off", standby: -1, want: 0},
		{name: "update refused", refuse: true, lowered: true,
			wantError: "give the new teamd its CPU shares (1024): dockerd is restarting"},
		{name: "no cpu.idle", noIdle: true, want: supervisor.DefaultCPUShares, lowered: true},
		{name: "leaving idle refused", idleError: errors.New("permission denied"), lowered: true,
			wantError: "take the new teamd out of idle: permission denied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := newSwitch(t, []string{"PortChannel1", "PortChannel2"})
			fs.noIdle = tt.noIdle
			ctx := context.Background()
			if tt.old != 0 {
				if _, err := fs.e.ContainerUpdate(ctx, fs.oldID, container.UpdateConfig{Resources: container.Resources{CPUShares: tt.old}}); err != nil {
					t.Fatal(err)
				}
			}
			o := fs.options()
			o.StandbyCPUShares = tt.standby
			var created, atUpdate int64 = -1, -1
			var cutoverAtUpdate error
			fs.e.Fail = func(op, target string, args ...string) error {
				if op != "Update" || target == fs.oldID {
					return nil
				}
				for _, c := range fs.e.List() {
					if c.ID == target {
						atUpdate = c.HostConfig.CPUShares
					}
				}
				_, cutoverAtUpdate = fs.dir.Read("", proto.KindCutover)
				if tt.refuse {
					return errors.New("dockerd is restarting")
				}
				return nil
			}
			newPID := 0
			o.Progress = func(st supervisor.Step) {
				if st.Stage == supervisor.StageStart && strings.Contains(st.Message, "started the new") {
					for _, c := range fs.e.List() {
						if c.ID != fs.oldID {
							created, newPID = c.HostConfig.CPUShares, c.Pid
						}
					}
					fs.idleError = tt.idleError // marking it idle went through
				}
			}
			rep, err := fs.upgrade(ctx, o)
			if tt.wantError != "" {
				if rep.Result != supervisor.ResultRolledBack || rep.Stage != supervisor.StageCutover || !strings.Contains(rep.Error, tt.wantError) {
					t.Fatalf("result %s at %s: %q; want rolled back at b1 with %q", rep.Result, rep.Stage, rep.Error, tt.wantError)
				}
				fs.e.Fail = nil
				fs.restored()
				return
			}
			if err != nil || rep.Result != supervisor.ResultOK {
				t.Fatalf("result %s: %v", rep.Result, err)
			}
			fs.checkIdle(t, tt.lowered && !tt.noIdle, newPID)
			if onlyShares := slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "stand behind at 2 CPU shares only") }); onlyShares != (tt.lowered && tt.noIdle) {
				t.Errorf("notes %q: a note that the shares alone rank the standbys: %v, want %v", rep.Notes, onlyShares, tt.lowered && tt.noIdle)
			}
			switch {
			case tt.lowered && created != supervisor.DefaultStandbyCPUShares:
				t.Errorf("the new container was created with %d CPU shares; want %d", created, supervisor.DefaultStandbyCPUShares)
			case !tt.lowered && created != tt.old:
				t.Errorf("the new container was created with %d CPU shares; want the old one's, %d", created, tt.old)
			}
			if tt.lowered && (atUpdate != supervisor.DefaultStandbyCPUShares || !errors.Is(cutoverAtUpdate, os.ErrNotExist)) {
				t.Errorf("at the update: %d shares, cutover record read %v; want %d shares and no cutover yet", atUpdate, cutoverAtUpdate, supervisor.DefaultStandbyCPUShares)
			}
			if !tt.lowered && atUpdate != -1 {
				t.Errorf("the new container's shares were updated (from %d), though it was never lowered", atUpdate)
			}
			if cs := fs.e.List(); len(cs) != 1 || cs[0].HostConfig.CPUShares != tt.want {
				t.Errorf("containers after the run: %v, the new one at %d CPU shares; want %d", names(cs), cs[0].HostConfig.CPUShares, tt.want)
			}
		})
	}
}
