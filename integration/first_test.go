package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

// The first upgrade of a switch: its teamd container is SONiC's (the
// teammgrd stand-in starts each teamd daemonized, with its pid file and
// -L, and no shim), upgraded to a teamdwarm image. A dry run says it is a
// first upgrade and changes nothing; a run interrupted at a3 rolls back
// and changes nothing; the upgrade hands all eight fast-mode LAGs over
// from snapshots teamd-warm wrote for the old teamds, signalled by PID (the
// tlm_teamd decoy beside them is not touched); the peer notices none of
// it. The upgraded box then takes an ordinary upgrade.
func TestIntegrationFirstUpgradeFromSONiC(t *testing.T) {
	bx := newBox(t, 8, 2, dut.Version{Name: "sonic", SONiC: true}, dut.Version{Name: "v1"}, dut.Version{Name: "v2"})
	oldID := bx.runTeamd(t, "sonic")
	w := mark(t, bx.Bed)

	rep, code, _ := bx.warm(t, "upgrade", "--image", bx.Images["v1"], "--dry-run")
	if code != 0 || rep.Result != supervisor.ResultOK || !rep.FirstUpgrade || len(rep.LAGs) != 8 || rep.ToEpoch != 2 {
		t.Fatalf("dry run: exit %d, %s, first %v, %d LAGs, to epoch %d (%s): want 0, ok, a first upgrade of 8 LAGs to epoch 2",
			code, rep.Result, rep.FirstUpgrade, len(rep.LAGs), rep.ToEpoch, rep.Error)
	}
	for _, l := range rep.LAGs {
		if l.Rate != "fast" || l.Teamd != "sonic" || !strings.HasPrefix(l.OldSpeaker, "teamd pid ") || len(l.Members) != 2 || l.Members[0].State != "current" {
			t.Errorf("dry run %s: %+v: want fast, SONiC's teamd without a shim, two current members", l.LAG, l)
		}
	}
	bx.unchanged(t, oldID)
	if st := bx.warmStatus(t); len(st.LAGs) != 8 || st.LAGs[0].NoShim == "" || st.LAGs[0].ServedBy != bx.Name || st.LAGs[0].Epoch != 1 {
		t.Errorf("status before the first upgrade: %+v: want 8 LAGs served by %s's teamds without a shim, at epoch 1", st.LAGs, bx.Name)
	}

	// Interrupted at a3: the rollback leaves the old teamds as they were.
	run := bx.startWarmUntilA3(t, "upgrade", "--image", bx.Images["v1"])
	_ = run.cmd.Process.Signal(syscall.SIGINT)
	rep, code = run.wait(t)
	if code != 4 || rep.Result != supervisor.ResultRolledBack || !strings.Contains(rep.Error, "interrupted before the cutover") {
		t.Errorf("interrupted: exit %d, %s (%s): want 4, rolled back", code, rep.Result, rep.Error)
	}
	bx.unchanged(t, oldID)
	if left, _ := statefile.List(bx.Dir); len(left) > 1 { // the journal
		t.Errorf("records after the rollback: %d, want the journal only", len(left))
	}
	if v := judgeSettled(t, bx.Bed, w, "a first upgrade rolled back before b1"); !v.Clean() {
		t.Fatal("the peer noticed the rolled-back first upgrade")
	}

	w = mark(t, bx.Bed)
	rep, code, _ = bx.warm(t, "upgrade", "--image", bx.Images["v1"])
	bx.upgraded(t, rep, code, oldID, "v1", 2)
	if !rep.FirstUpgrade {
		t.Error("the report does not say it was a first upgrade")
	}
	for _, l := range bx.Bed.LAGs {
		rec, err := statefile.ReadFile(filepath.Join(bx.Dir, l.Name+".active"))
		if err != nil || rec.(*proto.Active).FromEpoch != 1 {
			t.Errorf("%s.active: %v %+v: want taken over from epoch 1's snapshot", l.Name, err, rec)
		}
	}
	if _, err := os.Stat(filepath.Join(bx.Warmboot, "tlm_teamd.SIGUSR1")); err == nil {
		t.Error("SIGUSR1 reached tlm_teamd: the old teamds were signalled by name, not by PID")
	}
	bx.status(t, 2)
	if v := judgeSettled(t, bx.Bed, w, "8 LAGs moved from SONiC's teamd container onto teamdwarm"); !v.Clean() {
		t.Fatal("the peer noticed the first upgrade")
	}

	// From now on the switch upgrades as any teamdwarm one does.
	w = mark(t, bx.Bed)
	rep, code, _ = bx.warm(t, "upgrade", "--image", bx.Images["v2"])
	bx.upgraded(t, rep, code, rep.Old.ID, "v2", 3)
	if rep.FirstUpgrade {
		t.Error("the second upgrade is reported as a first one")
	}
	if v := judgeSettled(t, bx.Bed, w, "the upgrade after the first one"); !v.Clean() {
		t.Fatal("the peer noticed the second upgrade")
	}
}

// The fault matrix of the first upgrade, 2 LAGs x 2 members, each case
// from a fresh SONiC-shaped container: kill -9 of teamd-warm at every
// stage, of an old (shimless) teamd and of a new shim at a3 and right
// after the cutover, and docker pause of either container at a3. After
// the documented recovery every case is held to the crash-safe bound (no
// expiry, no PDU without Sync, no two speakers, gaps within 2 s) and ends
// with one container serving every LAG under its name. (docker stop of
// the old container is left out: SONiC's teammgrd stops its teamds cold on
// SIGTERM, and nothing of teamdwarm runs in that container to prevent it.)
func TestIntegrationFirstUpgradeFaults(t *testing.T) {
	bx := newBox(t, 2, 2, dut.Version{Name: "sonic", SONiC: true}, dut.Version{Name: "v1"})
	bx.runTeamd(t, "sonic")
	cases := []faultCase{}
	for _, stage := range []string{"a2", "a3", "cutover", "b2", "c1"} {
		cases = append(cases, faultCase{"teamd-warm", stage})
	}
	for _, stage := range []string{"a3", "cutover"} {
		cases = append(cases, faultCase{"old teamd", stage}, faultCase{"new shim", stage})
	}
	cases = append(cases, faultCase{"docker pause old", "a3"}, faultCase{"docker pause new", "a3"})
	var table strings.Builder
	for i, fc := range cases {
		if i > 0 {
			bx.resetTeamd(t, "sonic")
		}
		var res faultResult
		t.Run(strings.ReplaceAll(fc.String(), " ", "_"), func(t *testing.T) {
			res = bx.faultCase(t, fc, bx.Images["v1"], 1)
		})
		fmt.Fprintf(&table, "%-24s %5d %-12s %-12s %5d %8v  %s\n", fc, res.Exit, res.Result, orNone(res.Recovered), res.Epoch,
			res.MaxGap.Round(time.Millisecond), strings.Join(res.Problems, "; "))
	}
	t.Logf("first-upgrade fault matrix:\n%-24s %5s %-12s %-12s %5s %8s  %s\n%s", "CASE", "EXIT", "RESULT", "RECOVER", "EPOCH", "MAX GAP", "PROBLEMS", table.String())
}
