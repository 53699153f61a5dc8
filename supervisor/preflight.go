package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// plan is what preflight found: the world the flow starts from.
type plan struct {
	old      container.InspectResponse
	oldImage image.InspectResponse
	newImage image.InspectResponse
	epoch    uint64 // E: every LAG's current epoch
	lags     []lagPlan
	// first is the old side of a first upgrade (its teamds run without
	// teamd-shim: first.go); nil otherwise.
	first *firstPlan
	// standbyShares are the new container's CPU shares from its start to
	// the cutover; 0 if it runs with the old one's throughout.
	standbyShares int64
	// standbyIdle: the new container's cgroup is (or may be) marked idle
	// (Options.CPUIdle) until the cutover.
	standbyIdle bool
}

type lagPlan struct {
	name   string
	active *proto.Active
	state  *teamd.State
	// a3: when its standby said it was ready; whether that standby's shim
	// was found dead since.
	readyMono   int64
	deadStandby bool
	// first: the old speaker is a teamd without shim (first.go), whose
	// .active active stands in for.
	first bool
}

func (p *plan) lagNames() []string {
	names := make([]string, len(p.lags))
	for i, l := range p.lags {
		names[i] = l.name
	}
	return names
}

func (p *plan) lag(name string) *lagPlan {
	for i := range p.lags {
		if p.lags[i].name == name {
			return &p.lags[i]
		}
	}
	return nil
}

// fastBudget and slowBudget are how long a peer waits after the last PDU:
// three periods of 1 s or 30 s.
const (
	fastBudget = 3 * time.Second
	slowBudget = 90 * time.Second
)

// staleSlack allows for the wall clock between dockerd's start time and a
// shim's record.
const staleSlack = 2 * time.Second

// maxParallelExec bounds the teamdctl calls preflight makes at once.
const maxParallelExec = 8

// openDir refuses a record directory that is missing or unsafe (what the
// shims would refuse too).
func openDir(dir string) (*statefile.Dir, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("record directory: %w", err)
	}
	return statefile.OpenDir(dir) // checks ownership and mode, creates nothing here
}

// checkWritable proves the record directory takes a new file (a read-only
// mount lets the lock file be opened if it exists). The probe's name is
// the process's own, so that runs do not race on it.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".teamd-warm.probe.*")
	if err != nil {
		return fmt.Errorf("record directory %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// preflight checks everything the flow needs before it changes anything.
// The caller holds the lock.
func (r *run) preflight(ctx context.Context) (*plan, error) {
	s, p := r.s, &plan{}
	var err error
	// The old container: running, and sharing the record directory.
	if p.old, err = s.engine.ContainerInspect(ctx, s.opts.Container); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("no container %q", s.opts.Container)
		}
		return nil, err
	}
	r.rep.Old = containerInfo(p.old)
	if p.old.State == nil || !p.old.State.Running || p.old.HostConfig == nil || p.old.Config == nil {
		return nil, fmt.Errorf("container %s is not running: there is nothing to hand over", s.opts.Container)
	}
	if err := sharesDir(p.old, s.opts.Dir); err != nil {
		return nil, err
	}
	if p.oldImage, err = s.engine.ImageInspect(ctx, p.old.Image); err != nil {
		return nil, fmt.Errorf("the old container's image %s: %w", p.old.Image, err)
	}
	// No backup left from an earlier run: a1 needs its name.
	if bak, err := s.engine.ContainerInspect(ctx, s.opts.Backup); err == nil {
		return nil, fmt.Errorf("container %s exists (%s, from an earlier run?): remove it, or rename it back to %s if it serves the LAGs",
			s.opts.Backup, bak.State.Status, s.opts.Container)
	} else if !cerrdefs.IsNotFound(err) {
		return nil, err
	}
	// The new image, present here: a switch has no registry to pull from.
	if p.newImage, err = s.engine.ImageInspect(ctx, s.opts.Image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s is not present locally: load it first (docker load)", s.opts.Image)
		}
		return nil, err
	}
	if p.newImage.ID == p.oldImage.ID {
		r.note("the new image is the old container's own (%s): the teamds restart on the same code", shortID(p.newImage.ID))
	}
	if err := r.readActives(p); err != nil {
		return nil, err
	}
	if len(p.lags) == 0 {
		if err := r.planFirst(ctx, p); err != nil {
			p.first.close()
			return nil, err
		}
	} else if err := r.checkShims(p); err != nil {
		return nil, err
	}
	if err := r.askTeamds(ctx, p); err != nil {
		p.first.close()
		return nil, err
	}
	if err := r.checkWarmStop(p); err != nil {
		p.first.close()
		return nil, err
	}
	if err := r.checkInotify(p); err != nil {
		p.first.close()
		return nil, err
	}
	r.rep.FromEpoch, r.rep.ToEpoch = p.epoch, p.epoch+1
	return p, nil
}

// checkShims refuses a container that does not serve its LAGs: one
// started for another epoch (an interrupted run's new container, whose
// shims are standbys), or whose LAGs' shims have died (their records
// outlive them), or beside which a standby of the next epoch already waits.
// Shims of an earlier teamdwarm hold no liveness lock: if none of the LAGs
// has one, that is noted, not refused.
func (r *run) checkShims(p *plan) error {
	o := r.s.opts
	if e := containerEpoch(p.old); e != 0 && e != p.epoch {
		return fmt.Errorf("container %s was started with the shims of epoch %d, but its LAGs are active at epoch %d: it does not serve them (teamd-warm status says what does)",
			o.Container, e, p.epoch)
	}
	var dead, waiting []string
	locks := 0
	for _, l := range p.lags {
		if _, err := os.Stat(r.dir.LiveFile(l.name, p.epoch)); err == nil {
			locks++
		}
		if _, alive, err := r.dir.Alive(l.name, p.epoch); err != nil {
			return err
		} else if !alive {
			dead = append(dead, fmt.Sprintf("%s (epoch %d, written by %s)", l.name, p.epoch, writerOf(l.active.Writer)))
		}
		if who, alive, err := r.dir.Alive(l.name, p.epoch+1); err != nil {
			return err
		} else if alive {
			waiting = append(waiting, fmt.Sprintf("%s (%s)", l.name, who))
		}
	}
	switch {
	case len(waiting) > 0:
		return fmt.Errorf("standbys of epoch %d already run for %s: another new container waits to take over; remove it first (docker ps shows it)",
			p.epoch+1, strings.Join(waiting, ", "))
	case locks == 0:
		r.note("the shims of %s hold no liveness lock (an earlier teamdwarm): that they run is assumed", o.Container)
	case len(dead) > 0:
		return fmt.Errorf("the shims that wrote these LAGs' .active records are not running: %s; restart %s (docker restart %s) so that every LAG has a live shim",
			strings.Join(dead, ", "), o.Container, o.Container)
	}
	return nil
}

// containerEpoch is the epoch a container's shims were started with (the
// supervisor sets it on the containers it creates); 0 if it was not given.
func containerEpoch(c container.InspectResponse) uint64 {
	if c.Config == nil {
		return 0
	}
	for _, kv := range c.Config.Env {
		if v, ok := strings.CutPrefix(kv, proto.EnvEpoch+"="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}

func writerOf(w proto.Process) string {
	where := w.Container
	if where == "" {
		where = w.Hostname
	}
	return fmt.Sprintf("pid %d in %s", w.PID, where)
}

// checkWarmStop refuses LAGs whose teamd cannot stop warm: handing such a
// LAG over means killing its teamd, which the peer sees. A .active of an
// earlier teamdwarm does not say which teamd it wraps: noted, not refused.
func (r *run) checkWarmStop(p *plan) error {
	var bad, unknown []string
	for _, l := range p.lags {
		t := l.active.Teamd
		switch {
		case t == nil:
			unknown = append(unknown, l.name)
		case !teamd.Profile(t.Profile).WarmStop():
			bad = append(bad, fmt.Sprintf("%s (%s %s: %s)", l.name, t.Program, t.Version, teamd.Profile(t.Profile).What()))
		}
	}
	if len(unknown) > 0 {
		r.note("the shims of %s do not say which teamd they wrap (an earlier teamdwarm): SONiC's warm stop is assumed", strings.Join(unknown, " "))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d LAGs are served by a teamd that cannot stop warm, so handing them over would flap them: %s; run SONiC's teamd (or teamdwarm's) in %s first",
			len(bad), strings.Join(bad, ", "), r.s.opts.Container)
	}
	return nil
}

// sharesDir checks that dir is inside one of c's bind mounts, so that the
// shims in the old and the new container see the records the supervisor
// reads and writes.
func sharesDir(c container.InspectResponse, dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("record directory: %w", err)
	}
	for _, m := range c.Mounts {
		if m.Type != "bind" {
			continue
		}
		src, err := filepath.EvalSymlinks(m.Source)
		if err != nil {
			src = m.Source
		}
		if real == src || strings.HasPrefix(real, src+"/") {
			return nil
		}
	}
	return fmt.Errorf("container %s has no bind mount holding %s: its shims cannot see the records (SONiC mounts /host/warmboot at /var/warmboot)",
		c.Name[1:], dir)
}

// readActives reads every LAG's .active: each must be valid, of one epoch,
// and written since the old container started (else it is a leftover, say
// of a LAG removed from the config, whose standby would never come). None
// at all is a first upgrade (first.go).
func (r *run) readActives(p *plan) error {
	entries, err := statefile.List(r.s.opts.Dir)
	if err != nil {
		return fmt.Errorf("record directory: %w", err)
	}
	started, _ := time.Parse(time.RFC3339Nano, p.old.State.StartedAt)
	epochs := map[uint64][]string{}
	var problems []string
	for _, e := range entries {
		if e.Kind != proto.KindActive {
			continue
		}
		if e.Err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", e.Name, e.Err))
			continue
		}
		a := e.Record.(*proto.Active)
		if !started.IsZero() && a.Since.Before(started.Add(-staleSlack)) {
			problems = append(problems, fmt.Sprintf("%s is from %s, before container %s started at %s: a leftover (of a LAG no longer configured?); remove it",
				e.Name, a.Since.Format(time.RFC3339), r.s.opts.Container, started.Format(time.RFC3339)))
			continue
		}
		epochs[a.Epoch] = append(epochs[a.Epoch], a.LAG)
		p.lags = append(p.lags, lagPlan{name: a.LAG, active: a})
	}
	if len(problems) > 0 {
		return fmt.Errorf("records in %s: %s", r.s.opts.Dir, strings.Join(problems, "; "))
	}
	if len(epochs) > 1 {
		var parts []string
		for e, lags := range epochs {
			parts = append(parts, fmt.Sprintf("epoch %d: %s", e, strings.Join(lags, " ")))
		}
		sort.Strings(parts)
		return fmt.Errorf("the LAGs are not of one epoch (%s): a cutover needs one", strings.Join(parts, "; "))
	}
	for e := range epochs {
		p.epoch = e
	}
	sortLAGs(p.lags)
	return nil
}

func sortLAGs(lags []lagPlan) {
	slices.SortFunc(lags, func(a, b lagPlan) int { return teamd.CompareNames(a.name, b.name) })
}

// askTeamds gets every LAG's state from its teamd in the old container, as
// an operator would with teamdctl, and refuses LAGs a standby could never
// match: one whose teamd does not answer, or whose members do not all hear
// the partner (the standby is ready only when all of them do).
func (r *run) askTeamds(ctx context.Context, p *plan) error {
	states, askErrs := r.teamdStates(ctx, p)
	errs := make([]error, len(p.lags))
	for i := range p.lags {
		l := &p.lags[i]
		st := states[l.name]
		if st == nil {
			errs[i] = fmt.Errorf("%s: its teamd does not answer: %w", l.name, askErrs[l.name])
			continue
		}
		l.state = st
		if p.first != nil {
			l.active.Members = st.PortNames()
		}
		var bad []string
		for _, name := range st.PortNames() {
			if ps := st.Ports[name].Runner.State; ps != "current" {
				bad = append(bad, name+" is "+ps)
			}
		}
		switch {
		case len(st.Ports) == 0:
			errs[i] = fmt.Errorf("%s: its teamd has no member ports", l.name)
		case len(bad) > 0:
			errs[i] = fmt.Errorf("%s: %s: a standby is ready only when every member hears the partner", l.name, strings.Join(bad, ", "))
		}
	}
	r.rep.LAGs = nil
	for _, l := range p.lags {
		r.rep.LAGs = append(r.rep.LAGs, lagReport(l))
	}
	return errors.Join(errs...)
}

// teamdStates asks every LAG's teamd in the old container for its state:
// in one exec of "teamd-shim dump" where the container runs teamd-shim
// (an exec costs tens of milliseconds of dockerd's time), else with one
// teamdctl per LAG, a few at once.
func (r *run) teamdStates(ctx context.Context, p *plan) (map[string]*teamd.State, map[string]error) {
	if p.first != nil { // over each old teamd's control socket
		return askEach(p.lagNames(), maxParallelDump, func(lag string) (*teamd.State, error) { return p.first.stateDump(ctx, lag) })
	}
	states, errs := map[string]*teamd.State{}, map[string]error{}
	if filepath.Base(p.old.Path) == "teamd-shim" {
		all, err := r.s.dumpAll(ctx, p.old.ID, p.old.Path, p.lagNames())
		if err == nil {
			for _, l := range p.lags {
				if all[l.name].err != nil {
					errs[l.name] = all[l.name].err
				} else {
					states[l.name] = all[l.name].state
				}
			}
			return states, errs
		}
		r.s.opts.Logger.Info("teamd-shim dump failed; asking teamdctl LAG by LAG", "err", err)
	}
	return askEach(p.lagNames(), maxParallelExec, func(lag string) (*teamd.State, error) { return r.s.teamdState(ctx, p.old.ID, lag) })
}

// askEach asks every LAG's teamd for its state with ask, at most limit at
// once: the states of those that answered, and why the others did not.
func askEach(lags []string, limit int, ask func(lag string) (*teamd.State, error)) (map[string]*teamd.State, map[string]error) {
	states, errs := map[string]*teamd.State{}, map[string]error{}
	var mu sync.Mutex
	eachLAG(lags, limit, func(lag string) {
		st, err := ask(lag)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs[lag] = err
		} else {
			states[lag] = st
		}
	})
	return states, errs
}

// eachLAG runs fn for every LAG, in order, at most limit at once, and
// returns when every call has.
func eachLAG(lags []string, limit int, fn func(lag string)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for _, lag := range lags {
		sem <- struct{}{} // in order: b1's waves are the cutover's
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(lag)
		}()
	}
	wg.Wait()
}

// lagReport is a LAG's line of the report before the handoff.
func lagReport(l lagPlan) LAGReport {
	lr := LAGReport{LAG: l.name, Rate: "-"}
	if t := l.active.Teamd; t != nil {
		lr.Teamd = t.Profile
	}
	if l.first {
		lr.OldSpeaker = fmt.Sprintf("teamd pid %d, no shim", l.active.Writer.PID)
	}
	if l.state == nil {
		for _, m := range l.active.Members {
			lr.Members = append(lr.Members, MemberReport{Name: m, State: "?"})
		}
		return lr
	}
	lr.Rate, lr.Budget = "slow", Millis(slowBudget)
	if l.state.Runner.FastRate {
		lr.Rate, lr.Budget = "fast", Millis(fastBudget)
	}
	for _, name := range l.state.PortNames() {
		pr := l.state.Ports[name].Runner
		lr.Members = append(lr.Members, MemberReport{Name: name, State: pr.State, Selected: pr.Selected})
	}
	return lr
}

func containerInfo(c container.InspectResponse) *ContainerInfo {
	ci := &ContainerInfo{Name: strings.TrimPrefix(c.Name, "/"), ID: c.ID, ImageID: c.Image}
	if c.Config != nil {
		ci.Image = c.Config.Image
	}
	if c.State != nil && !c.State.Running && c.State.Status == "exited" {
		code := c.State.ExitCode
		ci.ExitCode = &code
	}
	return ci
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// checkInotify refuses a run that would run out of inotify instances or
// watches (per user, shared with every root process on the host): a
// standby that cannot watch never takes its LAG over. The run needs one
// for teamd-warm's own watch, and one for the new container if its init is
// teamd-shim's (one shared watch for every shim), else one per LAG.
func (r *run) checkInotify(p *plan) error {
	need, how := 1+len(p.lags), fmt.Sprintf("1 for teamd-warm and 1 per LAG (%d), %s does not run teamd-shim init", len(p.lags), r.s.opts.Container)
	if sharedWatch(p.old) || (p.first != nil && imageSharesWatch(p.newImage)) {
		need, how = 2, "1 for teamd-warm and 1 for the new container's teamd-shim init"
	}
	u, err := r.s.opts.InotifyUsage()
	if err != nil {
		r.note("inotify limits not checked: %v", err)
		return nil
	}
	if u.FreeInstances() < need || u.FreeWatches() < need {
		return fmt.Errorf("the run needs %d inotify instances and watches (%s), but root has %d of %d instances and %d of %d watches free: raise fs.inotify.max_user_instances / max_user_watches (sysctl), or stop what holds them",
			need, how, u.FreeInstances(), u.MaxInstances, u.FreeWatches(), u.MaxWatches)
	}
	return nil
}

// imageSharesWatch is sharedWatch for a container of image i started with
// its defaults (a first upgrade's new container: the old one's command is
// not teamd-shim's).
func imageSharesWatch(i image.InspectResponse) bool {
	c := i.Config
	if c == nil || len(c.Entrypoint) == 0 || filepath.Base(c.Entrypoint[0]) != "teamd-shim" {
		return false
	}
	args := append(slices.Clone(c.Entrypoint[1:]), c.Cmd...)
	return len(args) > 0 && args[0] == "init"
}

// sharedWatch reports whether a teamd container's PID 1 is teamd-shim
// init, which watches the record directory once for all its shims; the new
// container is started with the old one's command.
func sharedWatch(c container.InspectResponse) bool {
	return filepath.Base(c.Path) == "teamd-shim" && len(c.Args) > 0 && c.Args[0] == "init"
}
