package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/cpustat"
	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// cost is what the demo measures of CPU: the bed's own at rest (Open
// vSwitch, the observer, the old container's stand-ins and shims) and the
// handoff's, so that a reader can tell the product's cost from the bed's.
type cost struct {
	sampler   *cpustat.Sampler
	stop      context.CancelFunc
	cgroup    string  // the old container's CPU cgroup
	oldAtRest float64 // the old container's CPU at rest, in cores
}

// sampleEvery is the sampler's pace: fine enough for a handoff of a
// second or so, cheap enough (a few small /proc and cgroup reads).
const sampleEvery = 50 * time.Millisecond

// startCost samples Open vSwitch, this process (the observer) and the
// teamd containers (the cgroup above the old one's: the new container
// lands there too) until stopped.
func startCost(ctx context.Context, box *dut.Box, oldID string) (*cost, error) {
	c, err := box.Lab.Docker.ContainerInspect(ctx, oldID)
	if err != nil {
		return nil, err
	}
	if c.State == nil || c.State.Pid == 0 {
		return nil, fmt.Errorf("container %.12s has no process", oldID)
	}
	cg, err := cpustat.CgroupOf(c.State.Pid)
	if err != nil {
		return nil, err
	}
	counters := map[string]cpustat.Counter{
		"observer":   func() (time.Duration, error) { return cpustat.Process(os.Getpid()) },
		"containers": func() (time.Duration, error) { return cpustat.Cgroup(filepath.Dir(cg)) },
		"old":        func() (time.Duration, error) { return cpustat.Cgroup(cg) },
	}
	for name, pid := range box.Bed.OVS().PIDs() {
		counters[name] = func() (time.Duration, error) { return cpustat.Process(pid) }
	}
	ctx, stop := context.WithCancel(ctx)
	return &cost{sampler: cpustat.Start(ctx, sampleEvery, counters), stop: stop, cgroup: cg}, nil
}

// atRest measures the bed for d while nothing but LACP runs, and says it
// in one line: each part's share of one core.
func (c *cost) atRest(ctx context.Context, d time.Duration) (string, error) {
	before := c.byProgram()
	from := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	to := time.Now()
	after := c.byProgram()
	pct := func(name string) string {
		used, span, ok := c.sampler.Used(name, from, to)
		if !ok || span <= 0 {
			return "?"
		}
		return fmt.Sprintf("%.1f%%", 100*used.Seconds()/span.Seconds())
	}
	if used, span, ok := c.sampler.Used("old", from, to); ok && span > 0 {
		c.oldAtRest = used.Seconds() / span.Seconds()
	}
	var parts []string
	for _, prog := range slices.Sorted(maps.Keys(after)) {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", prog, 100*(after[prog]-before[prog]).Seconds()/to.Sub(from).Seconds()))
	}
	return fmt.Sprintf("CPU at rest over %v, in %% of one core: ovs-vswitchd %s, ovsdb-server %s, the observer %s; the old container %s (%s)",
		d, pct("ovs-vswitchd"), pct("ovsdb-server"), pct("observer"), pct("containers"), strings.Join(parts, ", ")), nil
}

// byProgram sums the CPU time of the old container's processes by
// program name.
func (c *cost) byProgram() map[string]time.Duration {
	out := map[string]time.Duration{}
	b, err := os.ReadFile(filepath.Join(c.cgroup, "cgroup.procs"))
	if err != nil {
		return out
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			continue
		}
		if used, err := cpustat.Process(pid); err == nil {
			out[strings.TrimSpace(string(comm))] += used
		}
	}
	return out
}

// handoff says what the handoff cost: the containers' CPU from the cutover
// to the last takeover, less what each would have used at rest meanwhile
// (the old one's rate before the upgrade, the new one's after it), per
// LAG; and Open vSwitch meanwhile. dir is the record directory; the
// sampler must have run two seconds past the last takeover.
func (c *cost) handoff(dir string, lags int) string {
	c.stop()
	c.sampler.Wait()
	rec, err := statefile.ReadFile(filepath.Join(dir, proto.FileName("", proto.KindCutover)))
	if err != nil {
		return fmt.Sprintf("CPU of the handoff: not measured (no cutover record: %v)", err)
	}
	cut := rec.(*proto.Cutover)
	es, err := statefile.List(dir)
	if err != nil {
		return fmt.Sprintf("CPU of the handoff: not measured (%v)", err)
	}
	var last time.Time
	n := 0
	taken := map[string]int64{} // LAG -> its old shim began the handoff
	signalled := map[string]int64{}
	for _, e := range es {
		switch r := e.Record.(type) {
		case *proto.Active:
			if r.Epoch != cut.ToEpoch {
				continue
			}
			n++
			if r.Since.After(last) {
				last = r.Since
			}
			signalled[r.LAG] = r.Timings.SignalSent
		case *proto.Snapshot:
			if r.Epoch == cut.FromEpoch {
				taken[r.LAG] = r.TakenMono
			}
		}
	}
	// The critical path: the old shim's start of the handoff (right after
	// its teamd's PDU) to the new teamd's takeover signal.
	var paths []time.Duration
	for lag, at := range taken {
		if sent := signalled[lag]; sent > at {
			paths = append(paths, time.Duration(sent-at))
		}
	}
	slices.Sort(paths)
	if n == 0 || !last.After(cut.Started) {
		return "CPU of the handoff: not measured (no takeover after the cutover)"
	}
	window := last.Sub(cut.Started)
	during, span, ok1 := c.sampler.Used("containers", cut.Started, last)
	// The old container is gone by then: the containers' CPU is the new one's.
	after, spanAfter, ok2 := c.sampler.Used("containers", last.Add(time.Second), last.Add(3*time.Second))
	if !ok1 || !ok2 || span <= 0 || spanAfter <= 0 {
		return "CPU of the handoff: not measured (too few samples)"
	}
	newAtRest := after.Seconds() / spanAfter.Seconds()
	extra := during - time.Duration((c.oldAtRest+newAtRest)*float64(span))
	line := fmt.Sprintf("CPU of the handoff: %d LAGs taken over in %v; the containers used %v in it, %v more than at rest (old %.0f%%, new %.0f%% of a core): %v per handoff",
		n, window.Round(time.Millisecond), during.Round(time.Millisecond), extra.Round(time.Millisecond),
		100*c.oldAtRest, 100*newAtRest, (extra / time.Duration(max(lags, 1))).Round(100*time.Microsecond))
	if len(paths) > 0 {
		q := func(p float64) time.Duration {
			return paths[int(p*float64(len(paths)-1))].Round(100 * time.Microsecond)
		}
		line += fmt.Sprintf("; critical path (old shim's handoff to the new teamd's signal) p50 %v, p99 %v, max %v", q(0.5), q(0.99), q(1))
	}
	if ovs, ovsSpan, ok := c.sampler.Used("ovs-vswitchd", cut.Started, last); ok && ovsSpan > 0 {
		line += fmt.Sprintf("; ovs-vswitchd %.0f%% of a core meanwhile", 100*ovs.Seconds()/ovsSpan.Seconds())
	}
	return line
}
