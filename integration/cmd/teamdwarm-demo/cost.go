package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/cpustat"
	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// cost is what the demo measures of CPU: the bed's own at rest (Open
// vSwitch, the observer, the old container's stand-ins and shims) and the
// handoff's, so that a reader can tell the product's cost from the bed's.
// The teamd stand-ins are the bed's: they are moved out of the containers'
// CPU accounting into a cgroup of their own as they start, so that the
// containers' figure is the product's (shims and inits).
//
// Nothing reads the containers' processes' own /proc entries beyond their
// names: the kernel walks every entry a reader made it keep when it reaps
// the process. Reading each thread's CPU at rest raised the handoff's
// figure at 128 LAGs from about 3 ms a handoff to 4 to 5.
type cost struct {
	sampler      *cpustat.Sampler
	stop         context.CancelFunc
	standIns     *cpustat.Group // every container's teamd stand-ins
	mover        *mover
	moverDone    <-chan struct{} // closed when the mover has stopped
	closeOnce    sync.Once
	oldAtRest    float64 // the old container's CPU at rest, in cores
	standInsRest float64 // its stand-ins', likewise
}

// standInComms are the stand-in's process names: installed as teamd.real
// under a shim, and as teamd in the SONiC-shaped container.
var standInComms = map[string]bool{"teamd.real": true, "teamd": true}

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
	standIns, err := cpustat.NewGroup(fmt.Sprintf("teamdwarm-demo-%d-stand-ins", os.Getpid()))
	if err != nil {
		return nil, err
	}
	containers := filepath.Dir(cg)
	mover := &mover{dir: containers, to: standIns, seen: map[int]bool{}, shims: map[int]int{}, from: map[int]string{},
		ours: map[string]bool{}, isOurs: func(id string) (bool, error) {
			// The box's teamd containers: the old one (renamed _bak by
			// the upgrade) and the new one, which takes its name.
			c, err := box.Lab.Docker.ContainerInspect(ctx, id)
			return err == nil && (c.Name == "/"+box.Name || c.Name == "/"+box.Name+"_bak"), err
		}}
	if err := mover.move(); err != nil { // the old container's, before any sample
		standIns.Close()
		return nil, err
	}
	counters := map[string]cpustat.Counter{
		"observer":   func() (time.Duration, error) { return cpustat.Process(os.Getpid()) },
		"containers": func() (time.Duration, error) { return cpustat.Cgroup(containers) },
		"old":        func() (time.Duration, error) { return cpustat.Cgroup(cg) },
		"stand-ins":  standIns.Used,
	}
	for name, pid := range box.Bed.OVS().PIDs() {
		counters[name] = func() (time.Duration, error) { return cpustat.Process(pid) }
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		mover.run(ctx)
	}()
	return &cost{sampler: cpustat.Start(ctx, sampleEvery, counters), stop: stop, standIns: standIns, mover: mover, moverDone: done}, nil
}

// mover moves the teamd stand-ins of the box's containers (cgroups under
// dir named by container ID) into a cgroup of their own, at the sampler's
// pace: those of the new container as its standbys start them, long
// before the cutover. Other containers' processes are left alone.
type mover struct {
	dir    string
	to     *cpustat.Group
	isOurs func(id string) (bool, error) // asked once per container
	ours   map[string]bool               // cgroup: one of the box's containers
	seen   map[int]bool                  // pids looked at for good
	shims  map[int]int                   // how often a pid was seen as teamd-shim
	from   map[int]string                // a moved stand-in's cgroup.procs in its container
}

func (m *mover) run(ctx context.Context) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = m.move() // a container going away mid-scan; the next tick sees
		}
	}
}

// move moves every stand-in not looked at yet.
func (m *mover) move() error {
	procs, err := filepath.Glob(filepath.Join(m.dir, "*", "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, p := range procs {
		cg := filepath.Base(filepath.Dir(p))
		ours, known := m.ours[cg]
		if !known {
			// Named by the container's ID with the cgroupfs driver,
			// docker-ID.scope with systemd's; anything else is not a
			// container.
			id := strings.TrimSuffix(strings.TrimPrefix(cg, "docker-"), ".scope")
			if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
				m.ours[cg] = false
				continue
			}
			var err error
			if ours, err = m.isOurs(id); err != nil {
				continue // asked again at the next look
			}
			m.ours[cg] = ours
		}
		if !ours {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue // removed meanwhile
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil || m.seen[pid] {
				continue
			}
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if err != nil {
				continue // gone
			}
			switch name := strings.TrimSpace(string(comm)); {
			case name == "teamd-shim" && m.shims[pid] < 2:
				// A shim's child before it execs teamd, or a shim: a
				// child would have become teamd by the next look.
				m.shims[pid]++
				continue
			case standInComms[name]:
				if err := m.to.Add(pid); err != nil {
					return err
				}
				m.from[pid] = p
			}
			m.seen[pid] = true
		}
	}
	return nil
}

// close stops the sampler and the mover, puts the stand-ins that still run
// back into their containers' cgroups and removes theirs. Once is enough.
func (c *cost) close() {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.moverDone
		c.sampler.Wait()
		for pid, procs := range c.mover.from {
			_ = os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0o644) // gone, or its container: nothing to put back
		}
		_ = c.standIns.Close()
	})
}

// restCost is the bed's CPU at rest, in cores (1 is one core busy); a
// part with too few samples is absent.
type restCost struct {
	Over  time.Duration      `json:"over_ns"`
	Cores map[string]float64 `json:"cores"` // ovs-vswitchd, ovsdb-server, observer, containers, stand-ins
}

// String says it in one line: each part's share of one core.
func (r restCost) String() string {
	pct := func(name string) string {
		c, ok := r.Cores[name]
		if !ok {
			return "?"
		}
		return fmt.Sprintf("%.1f%%", 100*c)
	}
	return fmt.Sprintf("CPU at rest over %v, in %% of one core: ovs-vswitchd %s, ovsdb-server %s, the observer %s; the old container %s, its teamd stand-ins %s, counted apart",
		r.Over, pct("ovs-vswitchd"), pct("ovsdb-server"), pct("observer"), pct("containers"), pct("stand-ins"))
}

// atRest measures the bed for d while nothing but LACP runs.
func (c *cost) atRest(ctx context.Context, d time.Duration) (restCost, error) {
	from := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return restCost{}, ctx.Err()
	}
	to := time.Now()
	r := restCost{Over: d, Cores: map[string]float64{}}
	for _, name := range []string{"ovs-vswitchd", "ovsdb-server", "observer", "containers", "stand-ins"} {
		if cores, ok := c.rate(name, from, to); ok {
			r.Cores[name] = cores
		}
	}
	c.oldAtRest, _ = c.rate("old", from, to)
	c.standInsRest = r.Cores["stand-ins"]
	return r, nil
}

// rate is the CPU counter name used from from to to, in cores; ok is
// false without two samples apart.
func (c *cost) rate(name string, from, to time.Time) (cores float64, ok bool) {
	used, span, ok := c.sampler.Used(name, from, to)
	if !ok || span <= 0 {
		return 0, false
	}
	return used.Seconds() / span.Seconds(), true
}

// handoffCost is what the handoff cost: the containers' CPU (the
// product's: shims and inits) from the cutover to the last takeover, less
// what each would have used at rest meanwhile (the old one's rate before
// the upgrade, the new one's after it), per LAG; what the stand-ins (the
// bed's) used; the critical paths; and Open vSwitch meanwhile. Durations
// in nanoseconds, rates in cores.
type handoffCost struct {
	NotMeasured  string        `json:"not_measured,omitempty"` // why, if it was not
	TakenOver    int           `json:"taken_over"`
	Window       time.Duration `json:"window_ns"` // the cutover to the last takeover
	Containers   time.Duration `json:"containers_ns"`
	OverRest     time.Duration `json:"containers_over_rest_ns"`
	OldAtRest    float64       `json:"old_at_rest_cores"`
	NewAtRest    float64       `json:"new_at_rest_cores"`
	PerHandoff   time.Duration `json:"per_handoff_ns"`
	StandIns     *standInCost  `json:"stand_ins,omitempty"`
	CriticalPath *quantiles    `json:"critical_path,omitempty"` // the old shim's handoff to the new teamd's signal
	OVSVswitchd  *float64      `json:"ovs_vswitchd_cores,omitempty"`
}

type standInCost struct {
	Used       time.Duration `json:"used_ns"`
	PerHandoff time.Duration `json:"per_handoff_ns"`
	RestBefore float64       `json:"at_rest_before_cores"`
	RestAfter  float64       `json:"at_rest_after_cores"`
}

type quantiles struct {
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// String says it in one line.
func (h handoffCost) String() string {
	if h.NotMeasured != "" {
		return "CPU of the handoff: not measured (" + h.NotMeasured + ")"
	}
	line := fmt.Sprintf("CPU of the handoff: %d LAGs taken over in %v; the containers (shims and inits) used %v in it, %v more than at rest (old %.0f%%, new %.0f%% of a core): %v per handoff",
		h.TakenOver, h.Window.Round(time.Millisecond), h.Containers.Round(time.Millisecond), h.OverRest.Round(time.Millisecond),
		100*h.OldAtRest, 100*h.NewAtRest, h.PerHandoff)
	if s := h.StandIns; s != nil {
		line += fmt.Sprintf("; the teamd stand-ins (the bed's, counted apart) used %v in it, %v per handoff (at rest %.0f%% of a core before, %.0f%% after)",
			s.Used.Round(time.Millisecond), s.PerHandoff, 100*s.RestBefore, 100*s.RestAfter)
	}
	if q := h.CriticalPath; q != nil {
		line += fmt.Sprintf("; critical path (old shim's handoff to the new teamd's signal) p50 %v, p99 %v, max %v", q.P50, q.P99, q.Max)
	}
	if o := h.OVSVswitchd; o != nil {
		line += fmt.Sprintf("; ovs-vswitchd %.0f%% of a core meanwhile", 100**o)
	}
	return line
}

// handoff measures the handoff's cost. dir is the record directory; the
// sampler must have run two seconds past the last takeover.
func (c *cost) handoff(dir string, lags int) handoffCost {
	c.close()
	rec, err := statefile.ReadFile(filepath.Join(dir, proto.FileName("", proto.KindCutover)))
	if err != nil {
		return handoffCost{NotMeasured: fmt.Sprintf("no cutover record: %v", err)}
	}
	cut := rec.(*proto.Cutover)
	es, err := statefile.List(dir)
	if err != nil {
		return handoffCost{NotMeasured: err.Error()}
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
		return handoffCost{NotMeasured: "no takeover after the cutover"}
	}
	h := handoffCost{TakenOver: n, Window: last.Sub(cut.Started), OldAtRest: c.oldAtRest}
	during, span, ok1 := c.sampler.Used("containers", cut.Started, last)
	// The old container is gone by then: the containers' CPU is the new one's.
	newAtRest, ok2 := c.rate("containers", last.Add(time.Second), last.Add(3*time.Second))
	if !ok1 || !ok2 || span <= 0 {
		return handoffCost{NotMeasured: "too few samples"}
	}
	perLAG := func(d time.Duration) time.Duration {
		return (d / time.Duration(max(lags, 1))).Round(100 * time.Microsecond)
	}
	h.Containers, h.NewAtRest = during, newAtRest
	h.OverRest = during - time.Duration((c.oldAtRest+newAtRest)*float64(span))
	h.PerHandoff = perLAG(h.OverRest)
	// The stand-ins' figure is what they used, with their rates at rest
	// beside it, not less them: a passive standby's teamd does not
	// transmit, so the sum of both sides' rates is no baseline for them.
	sDuring, sSpan, ok1 := c.sampler.Used("stand-ins", cut.Started, last)
	sAfter, ok2 := c.rate("stand-ins", last.Add(time.Second), last.Add(3*time.Second))
	if ok1 && ok2 && sSpan > 0 {
		h.StandIns = &standInCost{Used: sDuring, PerHandoff: perLAG(sDuring), RestBefore: c.standInsRest, RestAfter: sAfter}
	}
	if len(paths) > 0 {
		q := func(p float64) time.Duration {
			return paths[int(p*float64(len(paths)-1))].Round(100 * time.Microsecond)
		}
		h.CriticalPath = &quantiles{P50: q(0.5), P99: q(0.99), Max: q(1)}
	}
	if ovs, ovsSpan, ok := c.sampler.Used("ovs-vswitchd", cut.Started, last); ok && ovsSpan > 0 {
		cores := ovs.Seconds() / ovsSpan.Seconds()
		h.OVSVswitchd = &cores
	}
	return h
}
