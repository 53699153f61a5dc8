// Package cpustat reads the CPU time of processes and cgroups, and samples
// them over a run, so that the test bed's figures can tell the product's
// cost from the bed's own (Open vSwitch, the teamd stand-ins, the
// observer).
package cpustat

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/cgroup"
	"github.com/teamdwarm/teamdwarm/internal/sys/procstat"
)

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on Linux
// whatever the kernel's own tick.
const userHZ = 100

// Process is the CPU time (user and system) process pid has used: the sum
// of its threads' scheduler run time (nanoseconds), or, where the kernel
// does not keep that, /proc/PID/stat's, in USER_HZ ticks (a stand-in uses
// less than a tick in a second).
func Process(pid int) (time.Duration, error) {
	if d, err := threads(pid); err == nil {
		return d, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// threads sums the first field of /proc/PID/task/*/schedstat: each
// thread's time on a CPU, in ns.
func threads(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread exited
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return 0, err
		}
		sum += ns
	}
	if sum == 0 {
		return 0, fmt.Errorf("%s: no thread has run time in schedstat", dir)
	}
	return sum, nil
}

// parseSchedstat reads a schedstat line: run time (ns), wait time (ns),
// timeslices.
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, fmt.Errorf("schedstat: %d fields in %q, want 3", len(f), b)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || ns < 0 {
		return 0, fmt.Errorf("schedstat: run time %q is not a count of nanoseconds", f[0])
	}
	return time.Duration(ns), nil
}

// parseStat reads utime and stime from a /proc/PID/stat line. The process
// name may hold spaces and parentheses, so the fields are counted from the
// last ')'.
func parseStat(b []byte) (time.Duration, error) {
	f, err := procstat.Fields(b)
	if err != nil {
		return 0, err
	}
	// After the name: state(0) ppid ... utime is field 14 of the line,
	// index 11 here; stime 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the name, want 13 or more", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc stat: utime %q, stime %q are not counts", f[11], f[12])
	}
	if u > maxTicks || s > maxTicks-u {
		return 0, fmt.Errorf("/proc stat: utime %d + stime %d ticks is more than a Duration holds", u, s)
	}
	return time.Duration(u+s) * tick, nil
}

// tick is one USER_HZ tick. Counts are multiplied by it whole: multiplying
// by a second before dividing by USER_HZ overflows for large counts.
const tick = time.Second / userHZ

// maxTicks is the most USER_HZ ticks a Duration holds.
const maxTicks = uint64(math.MaxInt64 / int64(tick))

// CgroupOf is the directory of process pid's CPU accounting cgroup:
// cpuacct's under cgroup v1, the unified one under v2.
func CgroupOf(pid int) (string, error) { return cgroup.Dir(pid, "cpuacct") }

// Cgroup is the CPU time the processes of cgroup dir (and of the cgroups
// below it) have used, those that exited included.
func Cgroup(dir string) (time.Duration, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil { // v1, in ns
		ns, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/cpuacct.usage: %q is not a count", dir, b)
		}
		return time.Duration(ns), nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat")) // v2
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s/cpu.stat: usage_usec %q is not a count", dir, v)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	return 0, fmt.Errorf("%s/cpu.stat: no usage_usec", dir)
}

// Counter reads one cumulative CPU time.
type Counter func() (time.Duration, error)

// Sample is every counter's value at one moment; a counter that could not
// be read is absent.
type Sample struct {
	At     time.Time
	Values map[string]time.Duration
}

// Sampler reads named counters every interval, from Start until its
// context ends.
type Sampler struct {
	mu      sync.Mutex
	samples []Sample // guarded by mu
	done    chan struct{}
}

// Start samples counters every interval until ctx is done.
func Start(ctx context.Context, interval time.Duration, counters map[string]Counter) *Sampler {
	s := &Sampler{done: make(chan struct{})}
	take := func() {
		smp := Sample{At: time.Now(), Values: map[string]time.Duration{}}
		for name, c := range counters {
			if v, err := c(); err == nil {
				smp.Values[name] = v
			}
		}
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		take()
		for {
			select {
			case <-ctx.Done():
				take()
				return
			case <-tick.C:
				take()
			}
		}
	}()
	return s
}

// Wait waits for the sampler to stop (its context ended).
func (s *Sampler) Wait() { <-s.done }

// Used is how much CPU counter name used from the sample nearest from to
// the one nearest to, and the span between those two samples; ok is false
// if the counter has no value at either.
func (s *Sampler) Used(name string, from, to time.Time) (used, span time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, b := s.nearest(from), s.nearest(to)
	if a < 0 || b < 0 {
		return 0, 0, false
	}
	va, oka := s.samples[a].Values[name]
	vb, okb := s.samples[b].Values[name]
	if !oka || !okb || vb < va {
		return 0, 0, false
	}
	return vb - va, s.samples[b].At.Sub(s.samples[a].At), true
}

// nearest is the index of the sample nearest to t, -1 if none; s.mu held.
func (s *Sampler) nearest(t time.Time) int {
	best := -1
	var bestD time.Duration
	for i, smp := range s.samples {
		d := smp.At.Sub(t).Abs()
		if best < 0 || d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

// Group is a CPU accounting cgroup of its own, for the processes a
// benchmark moves into it: it counts their CPU from the move on, their
// exit included, and nothing before it.
type Group struct {
	dir    string
	parent string
}

// NewGroup makes a CPU accounting cgroup named name beside the calling
// process's own (cgroup v1's cpuacct, or v2's unified hierarchy).
func NewGroup(name string) (*Group, error) {
	own, err := CgroupOf(os.Getpid())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(own, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cpustat: make cgroup %s: %w", dir, err)
	}
	return &Group{dir: dir, parent: own}, nil
}

// Add moves process pid (every thread of it) into the group; its children
// are born there.
func (g *Group) Add(pid int) error {
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("cpustat: move pid %d into %s: %w", pid, g.dir, err)
	}
	return nil
}

// Used is the CPU the group's processes have used since they were added.
func (g *Group) Used() (time.Duration, error) { return Cgroup(g.dir) }

// Close moves the processes left in the group back to the parent and
// removes the group.
func (g *Group) Close() error {
	if b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			_ = os.WriteFile(filepath.Join(g.parent, "cgroup.procs"), []byte(f), 0o644)
		}
	}
	return os.Remove(g.dir)
}
