package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/cpustat"
	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// BenchmarkShimHandoff hands N LAGs of 2 members over from one set of shims
// to the next, b.N times, against Open vSwitch, and reports per LAG the
// critical path (old shim receives SIGUSR1 -> new teamd is sent the takeover
// signal: snapshot.taken_mono to active.timings.signal_sent), its p50 and
// p99, the largest gap the peer saw between two PDUs, the resident memory
// of one idle shim, and the CPU one handoff costs: the old shim's and
// teamd's from the cutover to their exit, the new ones' to the last
// takeover, and the shims' alone (each side's shims and teamds in CPU
// accounting cgroups of their own).
func BenchmarkShimHandoff(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("LAGs=%d", n), func(b *testing.B) { benchHandoff(b, n) })
	}
}

func benchHandoff(b *testing.B, lags int) {
	bed := newBed(b, lags, 2)
	dir, dump := recordDir(b), b.TempDir()
	// One watch of the directory for every shim, as a container's init
	// keeps (its cost is not in the figures; the demo's are whole
	// containers'): without it every record would wake every shim.
	ctx, stop := context.WithCancel(context.Background())
	b.Cleanup(stop)
	hub, err := statefile.NewHub(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	var olds []*sim
	for _, l := range bed.LAGs {
		olds = append(olds, startShim(b, bed, l, shimOpts{dir: dir, dumpDir: dump, hub: hub}))
	}
	awaitRecords(b, dir, proto.KindActive, bed.LAGs, 60*time.Second, epochIs(1))
	negotiated(b, bed)
	rss := residentKiB(b, olds[0].cmd.Process.Pid)

	var (
		paths     []time.Duration
		w         testbed.Window
		deadlines int
		stops     []time.Duration // SIGUSR1 to the old teamd -> snapshot seen
		cpuOld    time.Duration   // the old shims' and teamds' CPU in the handoffs
		cpuNew    time.Duration   // the new ones'
		cpuShims  time.Duration   // the shims' alone, old and new
		lastCut   time.Time
	)
	b.ResetTimer()
	for i := range b.N {
		epoch := uint64(i + 1)
		b.StopTimer()
		var news []*sim
		for _, l := range bed.LAGs {
			news = append(news, startShim(b, bed, l, shimOpts{role: "standby", epoch: int(epoch + 1), dir: dir, dumpDir: dump, hub: hub}))
		}
		awaitRecords(b, dir, proto.KindStandby, bed.LAGs, 60*time.Second, epochIs(epoch+1))
		if i == 0 {
			// The window judged is the handoffs', from the first cutover:
			// starting 2N processes on two cores is the bed's load, not
			// the handoff's (the tests judge the whole run).
			w = mark(b, bed)
		}
		// Handoffs seven periods apart: each adds the new teamd's first
		// PDU and its change PDU right after the old one's last (up to
		// a period after the cutover), and the peer's two-speakers
		// judge counts PDUs over five periods (a switch is not
		// upgraded every two seconds).
		time.Sleep(time.Until(lastCut.Add(7 * time.Second)))
		oldShims, oldTeamds := cpuGroups(b, fmt.Sprintf("old%d", i), olds)
		newShims, newTeamds := cpuGroups(b, fmt.Sprintf("new%d", i), news)
		lastCut = time.Now()
		b.StartTimer()
		writeCutover(b, dir, epoch, bed.LAGs)
		for _, o := range olds {
			o.signal(syscall.SIGUSR1)
		}
		actives := awaitRecords(b, dir, proto.KindActive, bed.LAGs, 30*time.Second, epochIs(epoch+1))
		b.StopTimer()
		shims := groupUsed(b, newShims)
		cpuNew += shims + groupUsed(b, newTeamds)
		cpuShims += shims
		for lag, r := range actives {
			a := r.(*proto.Active)
			if a.Path != proto.PathSnapshot {
				// Safe (the verdict below says whether the peer noticed),
				// but the budget was too short for this load: counted.
				b.Logf("%s took the %s path: %s", lag, a.Path, a.Note)
				deadlines++
			}
			rec, err := statefile.ReadFile(filepath.Join(dir, lag+".snapshot"))
			if err != nil {
				b.Fatal(err)
			}
			snap := rec.(*proto.Snapshot)
			paths = append(paths, time.Duration(a.Timings.SignalSent-snap.TakenMono))
			if len(snap.Members) > 0 {
				// Where the time goes: state dump, teamd's exit and the
				// snapshot write, the standby's reaction.
				stops = append(stops, time.Duration(a.Timings.SnapshotSeen-snap.Members[0].LastTxMono))
			}
		}
		for _, o := range olds {
			o.waitExit(b, 15*time.Second)
		}
		shims = groupUsed(b, oldShims)
		cpuOld += shims + groupUsed(b, oldTeamds)
		cpuShims += shims
		olds = news
		b.StartTimer()
	}
	b.StopTimer()
	time.Sleep(3500 * time.Millisecond) // three fast periods: any expiry shows
	v := judge(b, bed, w, fmt.Sprintf("%d LAGs x 2, %d handoff(s)", lags, b.N))
	if !v.Clean() {
		b.Fatal("the peer noticed a handoff")
	}
	slices.Sort(paths)
	b.ReportMetric(float64(pct(paths, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(paths, 99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(v.MaxGap().Milliseconds()), "peer-max-gap-ms")
	slices.Sort(stops)
	b.ReportMetric(float64(pct(stops, 99).Microseconds())/1000, "stop-p99-ms")
	b.ReportMetric(float64(rss)/1024, "idle-shim-MiB")
	b.ReportMetric(float64(deadlines), "deadline-takeovers")
	perHandoff := func(d time.Duration) float64 { return float64((d / time.Duration(lags*b.N)).Microseconds()) / 1000 }
	b.ReportMetric(perHandoff(cpuOld+cpuNew), "cpu-ms/handoff")
	b.ReportMetric(perHandoff(cpuOld), "cpu-old-ms/handoff")
	b.ReportMetric(perHandoff(cpuNew), "cpu-new-ms/handoff")
	b.ReportMetric(perHandoff(cpuShims), "cpu-shims-ms/handoff")
	b.ReportMetric(0, "ns/op") // a handoff's wall time is the figures above, not this
}

// pct is the nearest-rank percentile of sorted: with few samples, p99 is
// the largest.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

// residentKiB is VmRSS of pid.
func residentKiB(b *testing.B, pid int) int {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
			return kib
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// cpuGroups moves the shims of sims into a CPU accounting cgroup of
// their own and their teamds into another (the stand-in's cost is the
// bed's, not the product's), removed at cleanup.
func cpuGroups(b *testing.B, name string, sims []*sim) (shims, teamds *cpustat.Group) {
	group := func(what string) *cpustat.Group {
		g, err := cpustat.NewGroup(fmt.Sprintf("teamdwarm-bench-%d-%s-%s", os.Getpid(), name, what))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = g.Close() })
		return g
	}
	shims, teamds = group("shims"), group("teamds")
	for _, s := range sims {
		if err := shims.Add(s.cmd.Process.Pid); err != nil {
			b.Fatalf("%s: %v", s.lag.Name, err)
		}
		if err := teamds.Add(readPIDFile(b, filepath.Join(s.runDir, s.lag.Name+".pid"))); err != nil {
			b.Fatalf("%s: %v", s.lag.Name, err)
		}
	}
	return shims, teamds
}

func groupUsed(b *testing.B, g *cpustat.Group) time.Duration {
	used, err := g.Used()
	if err != nil {
		b.Fatal(err)
	}
	return used
}

// readPIDFile is the pid a pid file names.
func readPIDFile(b *testing.B, path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(raw), &pid); err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	return pid
}
