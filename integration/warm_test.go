package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/internal/sys/cgroup"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

// sweepDocker removes containers and images of killed runs; without a
// dockerd there is nothing to sweep.
func sweepDocker() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = dut.Sweep(ctx)
}

// needDocker skips a test that needs the live dockerd (failing under CI,
// where it must be there).
func needDocker(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := supervisor.Dial()
	if err == nil {
		_, err = c.Ping(ctx)
		c.Close()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the Docker Engine for the supervisor's tests: %v", err)
		}
		t.Skipf("needs a Docker Engine: %v", err)
	}
}

// box is a dut.Box under a test.
type box struct{ *dut.Box }

func newBox(t testing.TB, lags, members int, versions ...dut.Version) *box {
	t.Helper()
	needBed(t)
	needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := dut.NewBox(ctx, dut.BoxOptions{LAGs: lags, Members: members, Versions: versions, Dir: t.TempDir(),
		Bins: dut.Binaries{Shim: bins.shim, Teamd: bins.teamdsim, Pause: bins.pause, Teammgrd: bins.teammgrd}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	return &box{b}
}

// runTeamd starts the teamd container of version v and waits until every
// LAG is active at epoch 1 and negotiated with the peer.
func (bx *box) runTeamd(t testing.TB, v string) string {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			bx.logs(t)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := bx.RunTeamd(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// logs logs the end of every lab container's log.
func (bx *box) logs(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, _ := bx.Lab.Containers(ctx)
	for _, c := range cs {
		rc, err := bx.Lab.Docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "40"})
		if err != nil {
			continue
		}
		var out strings.Builder
		_, _ = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 1<<20))
		rc.Close()
		t.Logf("container %s %v (%s) log:\n%s", c.ID[:12], c.Names, c.State, out.String())
	}
}

// warm runs teamd-warm on the box with --json and returns its report, exit
// code and progress (stderr).
func (bx *box) warm(t *testing.T, args ...string) (*supervisor.Report, int, string) {
	t.Helper()
	cmd := bx.warmCmd(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if code < 0 {
		t.Fatalf("teamd-warm %s: %v\n%s", args, err, stderr.String())
	}
	t.Logf("teamd-warm %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	return report(t, stdout.Bytes()), code, stderr.String()
}

func (bx *box) warmCmd(args ...string) *exec.Cmd {
	full := append(args[:1:1], "--container", bx.Name, "--dir", bx.Dir, "--json")
	return exec.Command(bins.warm, append(full, args[1:]...)...)
}

// report reads teamd-warm's --json report and logs it as text.
func report(t *testing.T, out []byte) *supervisor.Report {
	t.Helper()
	var rep supervisor.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("teamd-warm --json: %v:\n%s", err, out)
	}
	var text strings.Builder
	_ = rep.WriteText(&text)
	t.Logf("report:\n%s", text.String())
	return &rep
}

// running is a teamd-warm run in the background.
type running struct {
	cmd      *exec.Cmd
	stdout   bytes.Buffer
	progress io.Reader
	log      strings.Builder
}

// startWarmUntilA3 starts teamd-warm and returns once it has started the
// new container: it holds the lock and waits at a3.
func (bx *box) startWarmUntilA3(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{cmd: bx.warmCmd(args...)}
	r.cmd.Stdout = &r.stdout
	var err error
	if r.progress, err = r.cmd.StderrPipe(); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	lines := bufio.NewScanner(r.progress)
	for lines.Scan() {
		r.log.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "standbys at epoch") {
			return r
		}
	}
	t.Fatalf("teamd-warm %s ended before a3:\n%s", strings.Join(args, " "), r.log.String())
	return nil
}

// wait waits for the run to end and returns its report and exit code.
func (r *running) wait(t *testing.T) (*supervisor.Report, int) {
	t.Helper()
	rest, _ := io.ReadAll(r.progress)
	r.log.Write(rest)
	_ = r.cmd.Wait()
	t.Logf("%s: exit %d\n%s", strings.Join(r.cmd.Args[1:], " "), r.cmd.ProcessState.ExitCode(), r.log.String())
	return report(t, r.stdout.Bytes()), r.cmd.ProcessState.ExitCode()
}

// inspect returns the container named name, or nil if there is none.
func (bx *box) inspect(t *testing.T, name string) *container.InspectResponse {
	t.Helper()
	c, err := bx.Lab.Docker.ContainerInspect(context.Background(), name)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// unchanged checks that the box is as it was: the container of that ID
// runs under its name, there is no backup, and no other teamd container.
func (bx *box) unchanged(t *testing.T, id string) {
	t.Helper()
	if c := bx.inspect(t, bx.Name); c == nil || c.ID != id || !c.State.Running {
		t.Errorf("%s is not the old container %s, running", bx.Name, id[:12])
	} else if rp := c.HostConfig.RestartPolicy.Name; rp != "unless-stopped" {
		t.Errorf("the old container's restart policy is %q, want unless-stopped as before", rp)
	}
	if bx.inspect(t, bx.Name+supervisor.BackupSuffix) != nil {
		t.Errorf("%s%s exists", bx.Name, supervisor.BackupSuffix)
	}
	cs, err := bx.Lab.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 { // the holder and the teamd container
		t.Errorf("%d lab containers, want the holder and %s only", len(cs), bx.Name)
	}
	for _, l := range bx.Bed.LAGs {
		if _, err := os.Stat(filepath.Join(bx.Dir, l.Name+".standby")); !os.IsNotExist(err) {
			t.Errorf("%s.standby is left (%v)", l.Name, err)
		}
	}
}

// upgraded checks a run that handed every LAG over: the report, and the
// containers after it.
func (bx *box) upgraded(t *testing.T, rep *supervisor.Report, code int, oldID, version string, epoch uint64) {
	t.Helper()
	if code != 0 || rep.Result != supervisor.ResultOK {
		t.Fatalf("exit %d, result %s (%s): want 0 and ok", code, rep.Result, rep.Error)
	}
	if rep.FromEpoch != epoch-1 || rep.ToEpoch != epoch || len(rep.LAGs) != len(bx.Bed.LAGs) {
		t.Errorf("epochs %d to %d, %d LAGs: want %d to %d, %d LAGs", rep.FromEpoch, rep.ToEpoch, len(rep.LAGs), epoch-1, epoch, len(bx.Bed.LAGs))
	}
	for _, l := range rep.LAGs {
		if l.Result != supervisor.LAGOK || l.Path != proto.PathSnapshot || l.Rate != "fast" {
			t.Errorf("%s: %s by %s (%s, %s): want a fast LAG handed over ok from its snapshot", l.LAG, l.Result, l.Path, l.Rate, l.Note)
		}
		for _, m := range l.Members {
			if m.GapFrom != "last-pdu" || m.Gap <= 0 {
				t.Errorf("%s %s: gap %v from %q: want a measured gap from the old teamd's last PDU", l.LAG, m.Name, m.Gap, m.GapFrom)
			}
		}
	}
	c := bx.inspect(t, bx.Name)
	if c == nil || c.ID == oldID || !c.State.Running || c.Config.Image != bx.Images[version] {
		t.Fatalf("%s is not a new running container of %s", bx.Name, bx.Images[version])
	}
	if c.HostConfig.NetworkMode != container.NetworkMode("container:"+bx.Holder.ID) ||
		len(c.HostConfig.Binds) != 2 || len(c.HostConfig.CapAdd) != 1 || c.HostConfig.RestartPolicy.Name != "unless-stopped" {
		t.Errorf("new container's settings differ from the old one's: network %s, binds %v, caps %v, restart %q",
			c.HostConfig.NetworkMode, c.HostConfig.Binds, c.HostConfig.CapAdd, c.HostConfig.RestartPolicy.Name)
	}
	// The standbys stood up at the least CPU shares; the speakers run at
	// the old container's (none set: docker's default), in dockerd's
	// config and in the kernel's cgroup.
	if got := c.HostConfig.CPUShares; got != supervisor.DefaultCPUShares {
		t.Errorf("new container at %d CPU shares after the run: want %d", got, supervisor.DefaultCPUShares)
	}
	if got, ok := kernelCPUShares(t, c.State.Pid); ok && got != supervisor.DefaultCPUShares {
		t.Errorf("new container's cgroup has cpu.shares %d after the run: want %d", got, supervisor.DefaultCPUShares)
	}
	if idle, err := cgroup.Idle(c.State.Pid); idle || (err != nil && !errors.Is(err, cgroup.ErrNoIdle)) {
		t.Errorf("new container's cgroup after the run: idle %v (%v), want not idle", idle, err)
	}
	for _, kv := range []string{"TEAMDWARM_IMAGE_VERSION=" + version, "TEAMDWARM_ROLE=standby", fmt.Sprintf("TEAMDWARM_EPOCH=%d", epoch)} {
		if !slices.Contains(c.Config.Env, kv) {
			t.Errorf("new container's environment %q lacks %s", c.Config.Env, kv)
		}
	}
	if bx.inspect(t, oldID) != nil || bx.inspect(t, bx.Name+supervisor.BackupSuffix) != nil {
		t.Errorf("the old container %s is still there", oldID[:12])
	}
}

// kernelCPUShares reads cpu.shares of pid's cgroup (cgroup v1's cpu
// controller); ok is false where there is none (cgroup v2).
func kernelCPUShares(t *testing.T, pid int) (shares int64, ok bool) {
	t.Helper()
	dir, err := cgroup.Dir(pid, "cpu")
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		t.Fatal(err) // no /proc/PID/cgroup
	}
	var v []byte
	if err == nil {
		v, err = os.ReadFile(filepath.Join(dir, "cpu.shares"))
	}
	if err != nil {
		t.Logf("pid %d has no cgroup v1 cpu controller (%v): its cpu.shares are not checked", pid, err)
		return 0, false
	}
	if _, err := fmt.Sscan(string(v), &shares); err != nil {
		t.Fatalf("cpu.shares of pid %d: %q: %v", pid, v, err)
	}
	return shares, true
}

// status checks teamd-warm status after a run: the container, no backup,
// the lock free, the run ended, every LAG served by the container at epoch
// with a live shim.
func (bx *box) status(t *testing.T, epoch uint64) {
	t.Helper()
	st := bx.warmStatus(t)
	if len(st.Containers) != 2 || !st.Containers[0].Present || st.Containers[0].Epoch != epoch || st.Containers[1].Present || st.Lock != "" ||
		st.Run == nil || st.Run.Stage != proto.JournalDone || st.Next != "" || len(st.Problems) > 0 {
		t.Errorf("status %+v: want %s present with epoch %d, no backup, the lock free, the run done, nothing to do", st, bx.Name, epoch)
	}
	served := 0
	for _, l := range st.LAGs {
		if l.Epoch == epoch && l.ServedBy == bx.Name && l.Alive {
			served++
		}
	}
	if served != len(bx.Bed.LAGs) || len(st.Containers[0].Serves) != len(bx.Bed.LAGs) {
		t.Errorf("status shows %d LAGs served by %s at epoch %d, want %d: %+v", served, bx.Name, epoch, len(bx.Bed.LAGs), st.LAGs)
	}
}

// The main case, on one box in turn: a missing image is refused
// and a dry run changes nothing; eight fast-mode LAGs are upgraded v1 to
// v2, then rolled back to v1; the peer notices neither.
func TestIntegrationWarmUpgradeAndRollback(t *testing.T) {
	bx := newBox(t, 8, 2, dut.Version{Name: "v1"}, dut.Version{Name: "v2"})
	oldID := bx.runTeamd(t, "v1")

	rep, code, _ := bx.warm(t, "upgrade", "--image", "teamdwarm-test/teamd:no-such-version")
	if code != 3 || rep.Result != supervisor.ResultRefused || !strings.Contains(rep.Error, "not present locally") {
		t.Errorf("missing image: exit %d, %s (%s): want 3, refused for the image", code, rep.Result, rep.Error)
	}
	bx.unchanged(t, oldID)

	rep, code, _ = bx.warm(t, "upgrade", "--image", bx.Images["v2"], "--dry-run")
	if code != 0 || rep.Result != supervisor.ResultOK || len(rep.LAGs) != 8 {
		t.Fatalf("dry run: exit %d, %s, %d LAGs (%s): want 0, ok, 8", code, rep.Result, len(rep.LAGs), rep.Error)
	}
	for _, l := range rep.LAGs {
		if l.Rate != "fast" || time.Duration(l.Budget) != 3*time.Second || len(l.Members) != 2 ||
			l.Members[0].State != "current" || !l.Members[0].Selected {
			t.Errorf("dry run %s: %+v: want fast, 3 s, two current selected members", l.LAG, l)
		}
	}
	bx.unchanged(t, oldID)

	w := mark(t, bx.Bed)
	rep, code, _ = bx.warm(t, "upgrade", "--image", bx.Images["v2"])
	bx.upgraded(t, rep, code, oldID, "v2", 2)
	bx.status(t, 2)
	time.Sleep(3500 * time.Millisecond) // three fast periods: an expiry the upgrade caused shows
	if v := judge(t, bx.Bed, w, "8 LAGs upgraded v1 to v2 by teamd-warm"); !v.Clean() {
		t.Fatal("the peer noticed the upgrade")
	}

	w = mark(t, bx.Bed)
	rep, code, _ = bx.warm(t, "rollback", "--image", bx.Images["v1"])
	bx.upgraded(t, rep, code, rep.Old.ID, "v1", 3)
	time.Sleep(3500 * time.Millisecond)
	if v := judge(t, bx.Bed, w, "8 LAGs rolled back v2 to v1 by teamd-warm"); !v.Clean() {
		t.Fatal("the peer noticed the rollback")
	}
}

// A new image whose teamd never hears the partner never gets ready: the
// supervisor rolls back on its own and the old container serves on, the
// peer noticing nothing. While the first run waits, a second is refused.
func TestIntegrationWarmNeverReadyRollsBack(t *testing.T) {
	bx := newBox(t, 2, 2, dut.Version{Name: "v1"}, dut.Version{Name: "deaf", Env: []string{"TEAMDSIM_FAULT=deaf"}})
	oldID := bx.runTeamd(t, "v1")
	w := mark(t, bx.Bed)

	first := bx.startWarmUntilA3(t, "upgrade", "--image", bx.Images["deaf"], "--ready-timeout", "6s")
	rep, code, _ := bx.warm(t, "upgrade", "--image", bx.Images["deaf"])
	if pid := first.cmd.Process.Pid; code != 3 || !strings.Contains(rep.Error, "another teamd-warm is running") || !strings.Contains(rep.Error, fmt.Sprintf("pid %d", pid)) {
		t.Errorf("second upgrade: exit %d, %s: want 3, refused naming the first (pid %d)", code, rep.Error, pid)
	}
	rep, code = first.wait(t)
	if code != 4 || rep.Result != supervisor.ResultRolledBack ||
		rep.Stage != supervisor.StageReady || !strings.Contains(rep.Error, "not ready within 6s") {
		t.Errorf("exit %d, %s at %s (%s): want 4, rolled back at a3 for readiness", code, rep.Result, rep.Stage, rep.Error)
	}
	bx.unchanged(t, oldID)

	// Ctrl-C before the cutover is a rollback too.
	third := bx.startWarmUntilA3(t, "upgrade", "--image", bx.Images["deaf"])
	_ = third.cmd.Process.Signal(syscall.SIGINT)
	rep, code = third.wait(t)
	if code != 4 || rep.Result != supervisor.ResultRolledBack || !strings.Contains(rep.Error, "interrupted before the cutover") {
		t.Errorf("exit %d, %s (%s): want 4, rolled back for the interrupt", code, rep.Result, rep.Error)
	}
	bx.unchanged(t, oldID)

	// A teamd config that differs from the running one's (an actor key
	// here) is refused at a3 and rolled back: the HLD allows no config
	// change during the process.
	conf := filepath.Join(bx.Configs, "PortChannel2.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(string(orig), `"lacp_key":1`, `"lacp_key":2`)), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, code, _ = bx.warm(t, "upgrade", "--image", bx.Images["v1"])
	if err := os.WriteFile(conf, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if code != 4 || rep.Stage != supervisor.StageReady || !strings.Contains(rep.Error, "the configuration of PortChannel2 changed") {
		t.Errorf("changed config: exit %d, %s at %s (%s): want 4, rolled back at a3 naming PortChannel2", code, rep.Result, rep.Stage, rep.Error)
	}
	bx.unchanged(t, oldID)

	for _, l := range bx.Bed.LAGs {
		rec, err := statefile.ReadFile(filepath.Join(bx.Dir, l.Name+".active"))
		if err != nil || rec.RecordEpoch() != 1 {
			t.Errorf("%s.active: %v, epoch %v: want epoch 1 still", l.Name, err, rec)
		}
	}
	time.Sleep(time.Second) // a fast period past the rollback
	if v := judge(t, bx.Bed, w, "an upgrade that never got ready, rolled back"); !v.Clean() {
		t.Fatal("the peer noticed the rolled-back upgrade")
	}
}

// inotifyInstances counts the inotify instances the processes of container
// id hold, by name of the process that holds each.
func (bx *box) inotifyInstances(ctx context.Context, t *testing.T, id string) map[string]int {
	t.Helper()
	top, err := bx.Lab.Docker.ContainerTop(ctx, id, []string{"-eo", "pid,args"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range top.Processes {
		if len(p) < 2 {
			continue
		}
		pid := strings.TrimSpace(p[0])
		fds, _ := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", pid, "fd", fd.Name())); err == nil && l == "anon_inode:inotify" {
				out[p[1]]++
			}
		}
	}
	return out
}

// Eight standbys waiting for the cutover hold one inotify instance between
// them (their init's shared watch), not one each: a switch's 128 LAGs stay
// clear of fs.inotify.max_user_instances (128 per user by default). Their
// container stands idle meanwhile, where the kernel has cpu.idle.
func TestIntegrationStandbysShareOneWatch(t *testing.T) {
	bx := newBox(t, 8, 2, dut.Version{Name: "v1"}, dut.Version{Name: "v2"})
	oldID := bx.runTeamd(t, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := bx.startWarmUntilA3(t, "upgrade", "--image", bx.Images["v2"])
	// Frozen, teamd-warm cannot cut over: the standbys stay standbys (a
	// shim watches before it writes .standby) while they are counted.
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	newID := bx.awaitNewContainer(ctx, t, oldID)
	awaitRecords(t, bx.Dir, proto.KindStandby, bx.Bed.LAGs, 30*time.Second, epochIs(2))
	got := bx.inotifyInstances(ctx, t, newID)
	idle, idleErr := false, error(nil)
	if c := bx.inspect(t, newID); c != nil && c.State.Running {
		idle, idleErr = cgroup.Idle(c.State.Pid)
	}
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	rep, code := r.wait(t)
	bx.upgraded(t, rep, code, oldID, "v2", 2)
	total := 0
	for _, n := range got {
		total += n
	}
	if total != 1 {
		t.Errorf("the new container's processes hold %d inotify instances, want 1 (init's): %v", total, got)
	}
	switch {
	case errors.Is(idleErr, cgroup.ErrNoIdle):
		t.Logf("the standbys' idle is not checked: %v", idleErr)
	case idleErr != nil || !idle:
		t.Errorf("the new container's cgroup in a3: idle %v (%v), want idle", idle, idleErr)
	}
}
