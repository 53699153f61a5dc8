package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/teamdwarm/teamdwarm/internal/sys/cgroup"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// handOver is b1..c1. Past b1 nothing is undone: every LAG is followed to
// its new speaker, and the report says how each got there.
func (r *run) handOver(ctx context.Context, p *plan, newID string) (*Report, error) {
	ctx, stop := r.uninterrupted(ctx)
	defer stop()

	r.enter(StageCutover)
	if err := r.journal(string(StageCutover)); err != nil {
		return r.rollback(err, p)
	}
	if err := r.speakingShares(ctx, p, newID, "for the takeovers"); err != nil {
		if served := r.servedByNew(p); len(served) > 0 {
			// A rollback would silence them.
			r.warn("%v; %s already served by the new %s, so the run goes on", err, strings.Join(served, " "), r.s.opts.Container)
		} else {
			return r.rollback(err, p)
		}
	}
	cut := r.newCutover(p)
	if _, err := r.dir.Write(cut); err != nil {
		// Not written, or written without its directory entry made
		// durable: either way take it back before a standby acts on it.
		_ = r.dir.Remove("", proto.KindCutover)
		return r.rollback(fmt.Errorf("write the cutover record: %w", err), p)
	}
	r.undo = nil // the point of no return
	if cut.Window > 0 {
		r.progress("%d LAGs hand over in %d waves of %d, a fast period apart, each right after its old teamd's PDU",
			len(cut.LAGs), cut.Waves(), cut.Window)
	}
	if p.first != nil {
		r.stopFirst(ctx, p, cut, nil)
	} else {
		r.stopOld(ctx, p.old.ID)
	}
	return r.afterCutover(ctx, p, newID, cut)
}

// speakingShares gives the new container the CPU shares it keeps: the old
// container's, or DefaultCPUShares if it had none set. Its standbys stood
// up at less (Options.StandbyCPUShares), behind the old teamds; once one of
// its teamds speaks (from the cutover on, or a standby that took over on
// its own in a3), it must not wait behind anyone. why ends the progress
// line.
func (r *run) speakingShares(ctx context.Context, p *plan, newID, why string) error {
	if p.standbyShares == 0 {
		return nil
	}
	o := r.s.opts
	// Idle first: the kernel refuses an idle cgroup's shares.
	if p.standbyIdle {
		if err := r.leaveIdle(ctx, newID); err != nil {
			return fmt.Errorf("take the new %s out of idle: %w", o.Container, err)
		}
		p.standbyIdle = false
	}
	to, what := fullShares(p.old), "the old one's"
	if p.old.HostConfig == nil || p.old.HostConfig.CPUShares == 0 {
		what = "the default; the old one had none set"
	}
	if _, err := r.s.engine.ContainerUpdate(ctx, newID, container.UpdateConfig{Resources: container.Resources{CPUShares: to}}); err != nil {
		return fmt.Errorf("give the new %s its CPU shares (%d): %w", o.Container, to, err)
	}
	p.standbyShares = 0
	r.progress("the new %s runs at %d CPU shares from now on (%s), %s", o.Container, to, what, why)
	return nil
}

// standbyIdle marks the new container, whose init is pid, idle until the
// cutover (Options.CPUIdle).
func (r *run) standbyIdle(p *plan, pid int) error {
	if pid <= 0 {
		return errors.New("its init's PID is not known")
	}
	if err := r.s.opts.CPUIdle(pid, true); err != nil {
		return err
	}
	p.standbyIdle = true
	return nil
}

// leaveIdle takes the new container out of idle. Its init is looked up
// anew: a container restarted since its start has another. A container
// that does not run has no cgroup; it gets a new one, not idle, when it
// starts.
func (r *run) leaveIdle(ctx context.Context, newID string) error {
	c, err := r.s.engine.ContainerInspect(ctx, newID)
	if err != nil {
		return err
	}
	if c.State == nil || !c.State.Running || c.State.Pid <= 0 {
		return nil
	}
	if err := r.s.opts.CPUIdle(c.State.Pid, false); err != nil && !errors.Is(err, cgroup.ErrNoIdle) {
		return err
	}
	return nil
}

// fullShares is the CPU shares of the new container once its teamds speak:
// the old container's, or DefaultCPUShares if it had none set.
func fullShares(old container.InspectResponse) int64 {
	if old.HostConfig != nil && old.HostConfig.CPUShares > 0 {
		return old.HostConfig.CPUShares
	}
	return DefaultCPUShares
}

// afterCutover is b2..c1: the takeovers, their verification, the old
// container's retirement.
func (r *run) afterCutover(ctx context.Context, p *plan, newID string, cut *proto.Cutover) (*Report, error) {
	o := r.s.opts
	r.enter(StageTakeover)
	if err := r.journal(string(StageTakeover)); err != nil {
		r.note("%v", err)
	}
	actives := r.waitActive(ctx, p, newID, waveSlack(cut))
	if len(actives) == 0 {
		if why := r.oldServesAll(ctx, p); why == "" {
			// Its shims refused to hand over to a new container that is
			// gone: nothing changed for the LAGs but the names.
			return r.undoRun(ctx, p, newID, fmt.Errorf("no LAG was taken over within %v of the cutover, and %s still serves every LAG (the new %s stopped?)",
				o.TakeoverTimeout, o.Backup, o.Container))
		}
	}
	failed := r.verify(p, cut, actives)

	r.enter(StageCleanup)
	if err := r.journal(string(StageCleanup)); err != nil {
		r.note("%v", err)
	}
	var retireErr error
	if served := r.stillServed(ctx, p, actives); len(served) > 0 {
		// Killing it would silence them.
		r.warn("%s still serves %s, which the new container did not take over: it is left running; see teamd-warm status",
			o.Backup, strings.Join(served, " "))
	} else {
		retireErr = r.retireOld(ctx, p, len(failed) > 0)
	}
	removeDeadLocks(r.dir, p.epoch, o.Logger)

	switch {
	case len(failed) > 0:
		return r.finish(ResultFailed, fmt.Errorf("%d of %d LAGs failed: %s", len(failed), len(p.lags), strings.Join(failed, ", ")))
	case retireErr != nil:
		return r.finish(ResultFailed, fmt.Errorf("every LAG was handed over, but %w", retireErr))
	}
	r.progress("every LAG is served by the new %s", o.Container)
	return r.finish(ResultOK, nil)
}

// uninterrupted is ctx without its cancellation, which is shown and
// ignored: past the point of no return every LAG is followed to its new
// speaker.
//
// The returned stop ends the watch; if the interrupt came, it returns once
// that was shown, so that nothing is printed after the run's result.
func (r *run) uninterrupted(ctx context.Context) (context.Context, func()) {
	shown := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shown)
		// Not r.progress: this runs beside the flow's goroutine.
		msg := "interrupt ignored: past the point of no return, every LAG is being handed over"
		r.s.opts.Logger.Warn(msg)
		if r.s.opts.Progress != nil {
			r.s.opts.Progress(Step{Stage: "interrupt", Message: msg, At: time.Now()})
		}
	})
	return context.WithoutCancel(ctx), func() {
		if !stop() { // it started
			<-shown
		}
	}
}

// oldServesAll says why the old container does not serve every LAG as
// before the run, "" if it does: running, not paused, every LAG's shim of
// the old epoch alive.
func (r *run) oldServesAll(ctx context.Context, p *plan) string {
	c, err := r.s.engine.ContainerInspect(ctx, p.old.ID)
	if err != nil || c.State == nil || !c.State.Running || c.State.Paused {
		return "the old container is not running"
	}
	if p.first != nil {
		if n := len(p.first.serving()); n < len(p.lags) {
			return fmt.Sprintf("%d of its %d teamds were stopped", len(p.lags)-n, len(p.lags))
		}
		return ""
	}
	for _, l := range p.lags {
		if _, alive, err := r.dir.Alive(l.name, p.epoch); err != nil || !alive {
			return l.name + "'s old shim is gone"
		}
	}
	return ""
}

// stillServed lists the LAGs not taken over whose old shim still runs.
func (r *run) stillServed(ctx context.Context, p *plan, actives map[string]*proto.Active) []string {
	if c, err := r.s.engine.ContainerInspect(ctx, p.old.ID); err != nil || c.State == nil || !c.State.Running {
		return nil
	}
	var out []string
	if p.first != nil {
		for _, lag := range p.first.serving() {
			if actives[lag] == nil {
				out = append(out, lag)
			}
		}
		return out
	}
	for _, l := range p.lags {
		if actives[l.name] != nil {
			continue
		}
		if _, alive, err := r.dir.Alive(l.name, p.epoch); err == nil && alive {
			out = append(out, l.name)
		}
	}
	return out
}

// newCutover is the cutover record of the plan, its deadline from now.
func (r *run) newCutover(p *plan) *proto.Cutover {
	now := monoclock.Now()
	host, _ := os.Hostname()
	c := &proto.Cutover{Schema: proto.SchemaVersion, FromEpoch: p.epoch, ToEpoch: p.epoch + 1,
		Writer:      proto.Process{Hostname: host, PID: os.Getpid()},
		StartedMono: now, Started: time.Now(), DeadlineMono: now + int64(r.s.opts.Deadline), LAGs: p.lagNames()}
	if len(p.lags) > r.s.opts.HandoverWindow {
		c.Window = r.s.opts.HandoverWindow
	}
	return c
}

// waveSlack is how much later than the first LAG the last may hand over:
// a fast period per wave (proto.Cutover.Wave), and one for the wait for
// its teamd's next PDU, as the standbys' deadlines move.
func waveSlack(c *proto.Cutover) time.Duration {
	return time.Duration(c.Waves()) * fastPeriod
}

// fastPeriod is LACP's fast periodic time: a PDU a second.
const fastPeriod = time.Second

// stopOld is b1's signal: SIGUSR1 to the old container, whose shims hand
// over. Two speakers must never be: if the signal cannot be sent, the old
// container is killed, and the standbys take over once the old speakers
// are gone. An old container that has stopped already has no speaker.
func (r *run) stopOld(ctx context.Context, id string) {
	e, o := r.s.engine, r.s.opts
	c, err := e.ContainerInspect(ctx, id)
	if err == nil && (c.State == nil || !c.State.Running) {
		r.note("%s had stopped before the cutover (%s): its LAGs are taken over without snapshots", o.Backup, stateOf(c))
		r.progress("cutover written (deadline %v); %s has stopped already: no way back now", o.Deadline, o.Backup)
		return
	}
	if err == nil && c.State.Paused {
		r.note("%s is paused: the signal waits for it, and its LAGs are taken over once their old speakers are found silent", o.Backup)
	}
	if err := e.ContainerKill(ctx, id, "SIGUSR1"); err != nil {
		r.note("SIGUSR1 to %s failed (%v): it was killed, and the LAGs taken over without snapshots", o.Backup, err)
		if kerr := e.ContainerKill(ctx, id, "SIGKILL"); kerr != nil && !cerrdefs.IsNotFound(kerr) {
			r.note("SIGKILL to %s failed too: %v", o.Backup, kerr)
		}
	}
	r.progress("cutover written (deadline %v), SIGUSR1 sent to %s: no way back now", o.Deadline, o.Backup)
}

// waitActive is b2/b3: every LAG's .active of the new epoch, or the
// takeover timeout. Meanwhile it undoes a pause of the new container (its
// standbys could not take over), names the LAGs it still waits for every
// Options.WaitingEvery, and once the deadline has passed with LAGs missing
// while the old container still runs, it sends SIGUSR1 again: a shim
// restarted after the first one has not had it.
func (r *run) waitActive(ctx context.Context, p *plan, newID string, slack time.Duration) map[string]*proto.Active {
	e, o := r.s.engine, r.s.opts
	ctx, cancel := context.WithTimeout(ctx, o.TakeoverTimeout+slack)
	defer cancel()
	got := map[string]*proto.Active{}
	events, err := statefile.WatchOnly(ctx, o.Dir, func(_ string, k proto.Kind) bool { return k == proto.KindActive })
	if err != nil {
		r.note("watching for the takeovers failed: %v", err)
		return got
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	say := time.NewTicker(o.WaitingEvery)
	defer say.Stop()
	resendAfter := o.Deadline + time.Second + slack
	resendAt, resent := time.Now().Add(resendAfter), false
	tl := r.newTally("taken over", len(p.lags))
	for len(got) < len(p.lags) {
		select {
		case ev, ok := <-events:
			if !ok {
				return got
			}
			if ev.Err != nil || ev.Removed || ev.Record.RecordEpoch() != p.epoch+1 {
				continue
			}
			a := ev.Record.(*proto.Active)
			if p.lag(a.LAG) == nil || got[a.LAG] != nil {
				continue
			}
			got[a.LAG] = a
			tl.add(a.LAG, string(a.Path))
		case <-tick.C:
			if c, err := e.ContainerInspect(ctx, newID); err == nil && c.State != nil && c.State.Paused {
				if err := e.ContainerUnpause(ctx, newID); err == nil {
					r.warn("the new %s was paused during the takeover: unpaused it", o.Container)
				}
			}
			if !resent && time.Now().After(resendAt) && p.first == nil { // a first upgrade's old teamds were stopped one by one
				resent = true
				if c, err := e.ContainerInspect(ctx, p.old.ID); err == nil && c.State != nil && c.State.Running {
					r.note("%s not taken over %v after the cutover while %s still runs: SIGUSR1 sent again", someNames(missing(p.lagNames(), got), tallyNames), resendAfter, o.Backup)
					_ = e.ContainerKill(ctx, p.old.ID, "SIGUSR1")
				}
			}
		case <-say.C:
			r.progress("%s", r.takeoversWaited(ctx, newID, missing(p.lagNames(), got), len(p.lags)))
		}
	}
	return got
}

// takeoversWaited says what b2 still waits for: the LAGs not taken over,
// whether the new container still runs to take them (a stopped one leaves
// the run waiting out its bound, then undone), and how long the wait may
// last.
func (r *run) takeoversWaited(ctx context.Context, newID string, left []string, total int) string {
	o := r.s.opts
	msg := fmt.Sprintf("waiting for %s (%d/%d taken over)", someNames(left, tallyNames), total-len(left), total)
	if c, err := r.s.engine.ContainerInspect(ctx, newID); err == nil && c.State != nil && !c.State.Running {
		msg += fmt.Sprintf("; the new %s is %s (exit code %d): its standbys take nothing over, the old shims keep or take back their LAGs",
			o.Container, c.State.Status, c.State.ExitCode)
	}
	if end, ok := ctx.Deadline(); ok {
		msg += fmt.Sprintf("; the takeovers' bound ends in %v", time.Until(end).Round(100*time.Millisecond))
	}
	return msg
}

// verify fills each LAG's result from its .active and the old teamd's
// snapshot, and returns the LAGs that failed.
func (r *run) verify(p *plan, cut *proto.Cutover, actives map[string]*proto.Active) []string {
	var failed []string
	for i := range r.rep.LAGs {
		lr := &r.rep.LAGs[i]
		var snap *proto.Snapshot
		if rec, err := statefile.ReadFile(filepath.Join(r.s.opts.Dir, proto.FileName(lr.LAG, proto.KindSnapshot))); err == nil && rec.RecordEpoch() == p.epoch {
			snap = rec.(*proto.Snapshot)
		}
		lr.handedOver(cut, actives[lr.LAG], snap)
		if lr.Result == LAGNoTakeover {
			lr.Note = fmt.Sprintf("no .active of epoch %d within %v", p.epoch+1, r.s.opts.TakeoverTimeout)
		}
		if lr.Result != LAGOK {
			failed = append(failed, lr.LAG+" ("+lr.Result+")")
		}
	}
	return failed
}

// retireOld is c1: the backup exits once its shims have written their
// snapshots; one that does not within the bound is killed. It is removed,
// unless a LAG failed: then it stays, stopped, for its logs. An old
// container that exited badly (a shim of it died) or had to be killed,
// after every LAG was handed over, is a warning, not a failure: the LAGs
// are served. The error says what of this did not happen.
//
// A first upgrade's old container has no shims to end it: its teamds are
// gone, and its other daemons (supervisord, teammgrd, teamsyncd,
// tlm_teamd) would run until stopped. It is killed at once, as
// upgrade_docker kills it: SIGTERM would run their shutdown paths, which
// are written for a container whose LAGs go away with it.
func (r *run) retireOld(ctx context.Context, p *plan, keep bool) error {
	e, o, id := r.s.engine, r.s.opts, p.old.ID
	if p.first != nil {
		if err := e.ContainerKill(ctx, id, "SIGKILL"); err != nil && !cerrdefs.IsNotFound(err) && !isNotRunning(err) {
			return fmt.Errorf("could not kill %s: %w", o.Backup, err)
		}
		r.progress("%s killed (its teamds had stopped warm)", o.Backup)
	}
	wctx, cancel := context.WithTimeout(ctx, o.ExitTimeout)
	defer cancel()
	killed := false
	exited, errc := e.ContainerWait(wctx, id, container.WaitConditionNotRunning)
	select {
	case <-exited:
	case err := <-errc:
		if cerrdefs.IsNotFound(err) {
			r.progress("%s is gone (removed on exit)", o.Backup)
			return nil
		}
		killed = true
		r.note("%s did not exit within %v (%v): killed", o.Backup, o.ExitTimeout, err)
		_ = e.ContainerKill(ctx, id, "SIGKILL")
		kctx, kcancel := context.WithTimeout(ctx, 10*time.Second)
		defer kcancel()
		exited, errc = e.ContainerWait(kctx, id, container.WaitConditionNotRunning)
		select {
		case <-exited:
		case err := <-errc:
			return fmt.Errorf("%s still runs after SIGKILL: %w", o.Backup, err)
		}
	}
	if c, err := e.ContainerInspect(ctx, id); err == nil && c.State != nil {
		code := c.State.ExitCode
		r.rep.Old.ExitCode = &code
		switch {
		case p.first != nil:
		case killed:
			r.warn("%s did not exit within %v of the cutover and was killed (exit %d)%s", o.Backup, o.ExitTimeout, code, r.logTail(id))
		case code != 0:
			r.warn("%s exited %d after the handoff%s", o.Backup, code, r.logTail(id))
		}
	}
	if keep {
		r.note("%s is kept, stopped, for its logs (docker logs %s); remove it before the next upgrade", o.Backup, o.Backup)
		return nil
	}
	if err := e.ContainerRemove(ctx, id, container.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("could not remove %s: %w", o.Backup, err)
	}
	r.progress("%s exited and was removed", o.Backup)
	return nil
}

// isNotRunning matches dockerd's refusal to signal a container that has
// stopped (a conflict, "is not running").
func isNotRunning(err error) bool {
	return cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "is not running")
}

// removeDeadLocks removes the liveness lock files of epochs up to epoch
// whose holders are gone: no shim of those epochs will run again.
func removeDeadLocks(d *statefile.Dir, epoch uint64, log *slog.Logger) {
	lives, err := d.Lives()
	if err != nil {
		return
	}
	for _, l := range lives {
		if l.Held || l.Epoch > epoch {
			continue
		}
		if err := os.Remove(l.Path); err == nil {
			log.Info("removed a dead shim's liveness lock", "file", l.Path)
		}
	}
}
