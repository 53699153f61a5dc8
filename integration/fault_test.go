package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/internal/test/testbin"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

// The fault matrix: a warm upgrade on the live dockerd, 2 LAGs x 2 members
// (TEAMDWARM_FAULT_LAGS sets another number of LAGs) facing Open vSwitch,
// with one fault injected at one stage: kill -9 of teamd-warm, of the old
// or new shim or teamd (of PortChannel1), at a2, at a3 (every standby
// ready), right after the cutover record lands, at b2 and at c1; docker
// stop and docker pause of either container at a3; the record directory
// made read-only (on the supervisor's side) at a3. After the documented
// recovery (teamd-warm recover when status says the run was interrupted;
// docker unpause and a writable directory where the fault left them so)
// every case is judged by the peer (no expiry, no PDU without Sync, no two
// speakers, a bounded gap) and by the end state: every LAG served by
// exactly one container, named as before, with its restart policy. The
// cases run one after the other on one box, each from the end state of the
// one before.

// faultCase is one cell of the matrix.
type faultCase struct {
	what  string // teamd-warm, old shim, old teamd, new shim, new teamd, docker stop old, ...
	stage string // a2, a3, cutover, b2, c1
}

func (f faultCase) String() string { return f.what + " at " + f.stage }

// gapLimit is the largest gap the peer may see: 2 s, the bound. A
// frozen old container is found silent 1.5 fast periods after its last
// PDU, before the deadline if need be.
func (f faultCase) gapLimit() time.Duration { return 2 * time.Second }

func faultMatrix() []faultCase {
	var cs []faultCase
	for _, what := range []string{"teamd-warm", "old shim", "old teamd", "new shim", "new teamd"} {
		for _, stage := range []string{"a2", "a3", "cutover", "b2", "c1"} {
			cs = append(cs, faultCase{what, stage})
		}
	}
	for _, what := range []string{"docker stop old", "docker stop new", "docker pause old", "docker pause new", "read-only directory"} {
		cs = append(cs, faultCase{what, "a3"})
	}
	return cs
}

// faultResult is one case's outcome, for the matrix's table.
type faultResult struct {
	Case      string        `json:"case"`
	Exit      int           `json:"exit"` // teamd-warm's, -1 if it was killed
	Result    string        `json:"result"`
	Recovered string        `json:"recovered"` // what recover did, "" if not needed
	Epoch     uint64        `json:"epoch"`     // serving after the case
	MaxGap    time.Duration `json:"max_gap_ns"`
	Problems  []string      `json:"problems"`
}

func TestIntegrationFaultMatrix(t *testing.T) {
	lags := 2
	if s := os.Getenv("TEAMDWARM_FAULT_LAGS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 256 {
			t.Fatalf("TEAMDWARM_FAULT_LAGS=%q: want a number of LAGs from 1 to 256", s)
		}
		lags = n
	}
	bx := newBox(t, lags, 2, dut.Version{Name: "v1"}, dut.Version{Name: "v2"})
	bx.runTeamd(t, "v1")
	results := bx.runFaults(t, faultMatrix())
	t.Logf("fault matrix:\n%s", faultTable(results))
	if path := os.Getenv("TEAMDWARM_FAULT_RESULTS"); path != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		_ = os.WriteFile(path, b, 0o644)
	}
}

// The faults whose timing a switch's size changes, on 128 LAGs x 2: a
// container stopped as the run reaches a3's end. The new one's 257
// processes take seconds to stop, so the cutover can come while its
// standbys go; the old one's shims all hand over on their own at once,
// racing the cutover. Each case must leave every LAG served, by the new
// container or the old, with no expiry and the matrix's gap bound.
func TestIntegrationFaultsAtScale(t *testing.T) {
	bx := newBox(t, 128, 2, dut.Version{Name: "v1"}, dut.Version{Name: "v2"})
	bx.runTeamd(t, "v1")
	results := bx.runFaults(t, []faultCase{{"docker stop new", "a3"}, {"docker stop old", "a3"}})
	t.Logf("faults at 128 LAGs:\n%s", faultTable(results))
}

// runFaults runs the cases in turn as subtests, each an upgrade to the
// other image from where the case before left the switch. A failed case's
// switch is reset to v1 first, so that one failure does not hide the rest.
func (bx *box) runFaults(t *testing.T, cases []faultCase) []faultResult {
	image, epoch := "v1", uint64(1)
	var results []faultResult
	for _, fc := range cases {
		next := map[string]string{"v1": "v2", "v2": "v1"}[image]
		var res faultResult
		ok := t.Run(strings.ReplaceAll(fc.String(), " ", "_"), func(t *testing.T) {
			res = bx.faultCase(t, fc, bx.Images[next], epoch)
		})
		res.Case = fc.String()
		results = append(results, res)
		if !ok {
			bx.resetTeamd(t, "v1")
			image, epoch = "v1", 1
			continue
		}
		if res.Epoch > epoch {
			image = next
		}
		epoch = res.Epoch
	}
	return results
}

// faultTable lays out the results one case a line, for the test log.
func faultTable(results []faultResult) string {
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %5s %-16s %-12s %5s %8s  %s\n", "CASE", "EXIT", "RESULT", "RECOVER", "EPOCH", "MAX GAP", "PROBLEMS")
	for _, r := range results {
		fmt.Fprintf(&table, "%-28s %5d %-16s %-12s %5d %8v  %s\n", r.Case, r.Exit, r.Result, orNone(r.Recovered), r.Epoch,
			r.MaxGap.Round(time.Millisecond), strings.Join(r.Problems, "; "))
	}
	return table.String()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// faultCase runs one upgrade of the box to image with the fault, recovers
// as documented, and judges the peer and the end state.
func (bx *box) faultCase(t *testing.T, fc faultCase, image string, epoch uint64) faultResult {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := faultResult{Exit: -1}
	old := bx.inspect(t, bx.Name)
	if old == nil {
		t.Fatal("no teamd container to upgrade")
	}
	w := mark(t, bx.Bed)

	// The trigger watches the records for the stage; the fault follows at
	// once.
	reached := bx.stageReached(ctx, t, fc.stage, epoch)
	cmd := bx.warmCmd("upgrade", "--image", image)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	undo := func() {}
	oldLog := bx.followLog(ctx, old.ID)
	defer func() {
		if t.Failed() {
			t.Logf("the old container's log:\n%s", oldLog.String())
		}
	}()
	// The new container's log too, once it exists.
	logCtx, stopLog := context.WithCancel(ctx)
	newLog := make(chan *testbin.Buffer, 1)
	go func() {
		defer close(newLog)
		if id := bx.newContainerID(logCtx, old.ID); id != "" {
			newLog <- bx.followLog(logCtx, id)
		}
	}()
	defer func() {
		stopLog()
		if b := <-newLog; b != nil && t.Failed() {
			t.Logf("the new container's log:\n%s", b.String())
		}
	}()
	select {
	case <-reached:
		undo = bx.inject(ctx, t, fc, cmd.Process.Pid, old.ID)
	case <-exited:
		t.Logf("teamd-warm ended before %s:\n%s", fc.stage, stderr.String())
	case <-ctx.Done():
		t.Fatalf("%s: the stage never came", fc)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		t.Fatalf("teamd-warm did not end:\n%s", stderr.String())
	}
	res.Exit = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Exit = -1
	}
	var rep supervisor.Report
	if json.Unmarshal(stdout.Bytes(), &rep) == nil {
		res.Result = string(rep.Result)
	} else {
		res.Result = "killed"
	}
	t.Logf("teamd-warm upgrade: exit %d, %s\n%s%s", res.Exit, res.Result, stderr.String(), stdout.String())

	// The documented recovery.
	undo()
	if st := bx.warmStatus(t); st.Run != nil && st.Run.Interrupted {
		t.Logf("status: %s at %s; next: %s", st.Run.Operation, st.Run.Stage, st.Next)
		out, err := exec.Command(bins.warm, "recover", "--container", bx.Name, "--dir", bx.Dir, "--json").CombinedOutput()
		var rr supervisor.Report
		_ = json.Unmarshal(out[bytes.IndexByte(out, '{'):], &rr)
		res.Recovered = string(rr.Result)
		t.Logf("teamd-warm recover: %v, %s\n%s", err, rr.Result, out)
		if err != nil {
			res.Problems = append(res.Problems, "recover failed: "+err.Error())
		}
	}
	time.Sleep(3500 * time.Millisecond) // three fast periods: an expiry shows
	v := judge(t, bx.Bed, w, fc.String())
	res.MaxGap = v.MaxGap()
	for _, m := range v.Members {
		for _, p := range m.Problems {
			if strings.HasPrefix(p, "largest gap") && m.MaxGap <= fc.gapLimit() {
				continue // within this case's limit
			}
			res.Problems = append(res.Problems, m.Member+": "+p)
		}
	}
	res.Epoch = bx.endState(t, &res)
	for _, p := range res.Problems {
		t.Error(p)
	}
	return res
}

// stageReached closes its channel when the run reaches stage: the journal
// at a2, b2 or c1; every standby of the new epoch ready at a3; the cutover
// record right after it lands.
func (bx *box) stageReached(ctx context.Context, t *testing.T, stage string, epoch uint64) <-chan struct{} {
	t.Helper()
	events, err := statefile.Watch(ctx, bx.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		ready := map[string]bool{}
		for ev := range events {
			if ev.Record == nil || ev.Record.RecordEpoch() != epoch+1 {
				continue
			}
			hit := false
			switch r := ev.Record.(type) {
			case *proto.Journal:
				hit = r.Stage == stage && stage != "a3" // a3: once every standby is ready
			case *proto.Standby:
				ready[r.LAG] = true
				hit = stage == "a3" && len(ready) == len(bx.Bed.LAGs)
			case *proto.Cutover:
				hit = stage == "cutover"
			}
			if hit {
				close(ch)
				for range events { // drain until the watch ends
				}
				return
			}
		}
	}()
	return ch
}

// inject applies the fault and returns what undoes what it left (a mount,
// a pause) before recovery.
func (bx *box) inject(ctx context.Context, t *testing.T, fc faultCase, warmPID int, oldID string) (undo func()) {
	t.Helper()
	undo = func() {}
	lag := bx.Bed.LAGs[0].Name
	d := bx.Lab.Docker
	switch fc.what {
	case "teamd-warm":
		_ = syscall.Kill(warmPID, syscall.SIGKILL)
	case "old shim", "old teamd", "new shim", "new teamd":
		id := oldID
		if strings.HasPrefix(fc.what, "new") {
			id = bx.awaitNewContainer(ctx, t, oldID)
		}
		pid := bx.processOf(ctx, t, id, lag, strings.HasSuffix(fc.what, "shim"))
		if pid == 0 {
			t.Logf("%s: no such process any more (the stage is past it)", fc.what)
			return undo
		}
		t.Logf("kill -9 %s of %s: pid %d", fc.what, lag, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	case "docker stop old", "docker stop new", "docker pause old", "docker pause new":
		id := oldID
		if strings.HasSuffix(fc.what, "new") {
			id = bx.awaitNewContainer(ctx, t, oldID)
		}
		if strings.Contains(fc.what, "stop") {
			timeout := 10
			go func() { _ = d.ContainerStop(context.Background(), id, container.StopOptions{Timeout: &timeout}) }()
			return undo
		}
		if err := d.ContainerPause(ctx, id); err != nil {
			t.Fatal(err)
		}
		return func() {
			if c, err := d.ContainerInspect(context.Background(), id); err == nil && c.State != nil && c.State.Paused {
				t.Logf("unpausing %s (the run left it paused)", id[:12])
				_ = d.ContainerUnpause(context.Background(), id)
			}
		}
	case "read-only directory":
		// Made read-only aside, then moved over the directory in one step:
		// a bind mount cannot be remounted read-only while a file is open
		// for writing through it, and teamd-warm writes all along.
		stage := t.TempDir()
		for _, args := range [][]string{{"--bind", bx.Dir, stage}, {"-o", "remount,bind,ro", stage}, {"--move", stage, bx.Dir}} {
			if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
				_ = exec.Command("umount", stage).Run()
				t.Fatalf("mount %s: %v %s", strings.Join(args, " "), err, out)
			}
		}
		umount := func() { _ = exec.Command("umount", bx.Dir).Run() }
		t.Cleanup(umount)
		return umount
	default:
		t.Fatalf("unknown fault %q", fc.what)
	}
	return undo
}

// followLog collects a container's log as it comes, so that it can be
// shown after the container is gone.
func (bx *box) followLog(ctx context.Context, id string) *testbin.Buffer {
	var b testbin.Buffer
	rc, err := bx.Lab.Docker.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Tail: "0"})
	if err != nil {
		return &b
	}
	go func() {
		defer rc.Close()
		_, _ = stdcopy.StdCopy(&b, &b, rc)
	}()
	return &b
}

// awaitNewContainer is the new container's ID once it exists (at a2 it
// may be about to be created).
func (bx *box) awaitNewContainer(ctx context.Context, t *testing.T, oldID string) string {
	t.Helper()
	id := bx.newContainerID(ctx, oldID)
	if id == "" {
		t.Fatal("the new container never ran")
	}
	return id
}

// newContainerID waits for a running container under the box's name that
// is not oldID; "" if ctx ends first.
func (bx *box) newContainerID(ctx context.Context, oldID string) string {
	for {
		if c, err := bx.Lab.Docker.ContainerInspect(ctx, bx.Name); err == nil && c.ID != oldID && c.State != nil && c.State.Running {
			return c.ID
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(10 * time.Millisecond): // docker gives no event this package listens to
		}
	}
}

// processOf is the host pid of the shim or the teamd of lag in container
// id, 0 if there is none; it waits up to 5 s for it to appear.
func (bx *box) processOf(ctx context.Context, t *testing.T, id, lag string, shim bool) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		top, err := bx.Lab.Docker.ContainerTop(ctx, id, []string{"-eo", "pid,args"})
		if err != nil {
			return 0
		}
		for _, p := range top.Processes {
			if len(p) < 2 || !strings.Contains(p[1], "-t "+lag+" ") {
				continue
			}
			isShim := strings.Contains(p[1], "teamd-shim run")
			isTeamd := strings.Contains(p[1], "teamd.real") || strings.HasPrefix(p[1], "/usr/bin/teamd ") // under a shim, or SONiC's
			if isShim == shim && (isShim || isTeamd) {
				pid, _ := strconv.Atoi(strings.TrimSpace(p[0]))
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond) // the process is being started; no event to wait on
	}
	return 0
}

// warmStatus is teamd-warm status --json.
func (bx *box) warmStatus(t *testing.T) supervisor.Status {
	t.Helper()
	out, err := exec.Command(bins.warm, "status", "--container", bx.Name, "--dir", bx.Dir, "--json").Output()
	if err != nil {
		t.Fatalf("teamd-warm status: %v", err)
	}
	var st supervisor.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("teamd-warm status --json: %v\n%s", err, out)
	}
	return st
}

// endState checks what an operator expects after any case: the container
// under its name, running, with its restart policy; no backup, no other
// teamd container; status with nothing to do, every LAG served by it with
// a live shim at the container's epoch. It returns that epoch.
func (bx *box) endState(t *testing.T, res *faultResult) uint64 {
	t.Helper()
	bad := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }
	c := bx.inspect(t, bx.Name)
	switch {
	case c == nil:
		bad("no container %s", bx.Name)
		return 0
	case !c.State.Running || c.State.Paused:
		bad("%s is %s", bx.Name, c.State.Status)
	case c.HostConfig.RestartPolicy.Name != "unless-stopped":
		bad("%s's restart policy is %q, want unless-stopped", bx.Name, c.HostConfig.RestartPolicy.Name)
	}
	if bx.inspect(t, bx.Name+supervisor.BackupSuffix) != nil {
		bad("%s%s is still there", bx.Name, supervisor.BackupSuffix)
	}
	if cs, err := bx.Lab.Containers(context.Background()); err == nil && len(cs) != 2 {
		var names []string
		for _, x := range cs {
			names = append(names, strings.Join(x.Names, ",")+" "+x.State)
		}
		bad("%d lab containers (%s), want the holder and %s", len(cs), strings.Join(names, "; "), bx.Name)
	}
	st := bx.warmStatus(t)
	if len(st.Problems) > 0 || st.Next != "" || (st.Run != nil && st.Run.Stage != proto.JournalDone) {
		bad("status: problems %q, next %q, run %+v", st.Problems, st.Next, st.Run)
	}
	epoch := uint64(0)
	for _, l := range st.LAGs {
		if l.ServedBy != bx.Name || !l.Alive {
			bad("%s: served by %q, shim alive %v (%s)", l.LAG, l.ServedBy, l.Alive, l.Problem)
		}
		if epoch == 0 {
			epoch = l.Epoch
		} else if l.Epoch != epoch {
			bad("the LAGs are at epochs %d and %d", epoch, l.Epoch)
		}
	}
	if len(st.LAGs) != len(bx.Bed.LAGs) {
		bad("status lists %d LAGs, want %d", len(st.LAGs), len(bx.Bed.LAGs))
	}
	if e := st.Containers[0].Epoch; e != 0 && e != epoch {
		bad("%s was started for epoch %d but its LAGs are at %d", bx.Name, e, epoch)
	}
	return epoch
}

// resetTeamd puts the box back to one teamd container of version v at
// epoch 1, whatever a failed case left: every teamd container removed, the
// records cleared.
func (bx *box) resetTeamd(t *testing.T, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = exec.Command("umount", bx.Dir).Run()
	cs, err := bx.Lab.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.ID == bx.Holder.ID {
			continue
		}
		if err := bx.Lab.Docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	des, _ := os.ReadDir(bx.Dir)
	for _, de := range des {
		_ = os.Remove(filepath.Join(bx.Dir, de.Name()))
	}
	if _, err := bx.RunTeamd(ctx, v); err != nil {
		t.Fatal(err)
	}
}
