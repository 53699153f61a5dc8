package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// Supervisor runs the flow against one Docker Engine.
type Supervisor struct {
	engine Engine
	opts   Options
}

// New returns a supervisor; it checks the options, not the engine.
func New(e Engine, o Options) (*Supervisor, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	return &Supervisor{engine: e, opts: o}, nil
}

// undoStep is one thing to undo on rollback.
type undoStep struct {
	what string
	do   func(context.Context) error
}

// run is one execution of the flow; its fields are owned by the goroutine
// running it.
type run struct {
	s          *Supervisor
	rep        *Report
	stage      Stage
	stageStart time.Time
	undo       []undoStep
}

func (s *Supervisor) newRun(op Operation) *run {
	now := time.Now()
	return &run{s: s, rep: &Report{Operation: op, Container: s.opts.Container, Image: s.opts.Image,
		Dir: s.opts.Dir, Started: now, Stages: []StageTime{}, LAGs: []LAGReport{}}, stageStart: now}
}

// enter ends the current stage and starts the next.
func (r *run) enter(st Stage) {
	now := time.Now()
	if r.stage != "" {
		r.rep.Stages = append(r.rep.Stages, StageTime{Stage: r.stage, Took: Millis(now.Sub(r.stageStart))})
	}
	r.stage, r.stageStart = st, now
}

func (r *run) progress(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.s.opts.Logger.Info(msg, "stage", r.stage)
	if r.s.opts.Progress != nil {
		r.s.opts.Progress(Step{Stage: r.stage, Message: msg, At: time.Now()})
	}
}

func (r *run) note(format string, args ...any) {
	r.rep.Notes = append(r.rep.Notes, fmt.Sprintf(format, args...))
}

// finish closes the report; err, if any, is returned as an *Error.
func (r *run) finish(res Result, err error) (*Report, error) {
	r.enter("")
	r.rep.Took = Millis(time.Since(r.rep.Started))
	r.rep.Result = res
	if err == nil {
		return r.rep, nil
	}
	e := &Error{Stage: r.failedStage(), Result: res, Err: err}
	r.rep.Stage, r.rep.Error = e.Stage, e.Error()
	return r.rep, e
}

func (r *run) failedStage() Stage {
	for i := len(r.rep.Stages) - 1; i >= 0; i-- {
		if st := r.rep.Stages[i].Stage; st != StageRollback {
			return st
		}
	}
	return StagePreflight
}

// begin checks the directory, takes the lock and runs preflight.
func (r *run) begin(ctx context.Context) (*plan, func(), error) {
	r.enter(StagePreflight)
	if err := checkDir(r.s.opts.Dir); err != nil {
		return nil, nil, err
	}
	unlock, err := lock(r.s.opts.Dir, fmt.Sprintf("teamd-warm %s of %s to %s", r.rep.Operation, r.s.opts.Container, r.s.opts.Image))
	if err != nil {
		return nil, nil, err
	}
	p, err := r.preflight(ctx)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	r.progress("%d LAGs at epoch %d in %s (%s), image %s present", len(p.lags), p.epoch,
		r.s.opts.Container, shortID(p.old.ID), r.s.opts.Image)
	return p, unlock, nil
}

// DryRun runs preflight only and reports, per LAG, its rate, members and
// the budget a handoff would have.
func (s *Supervisor) DryRun(ctx context.Context) (*Report, error) {
	r := s.newRun(OpDryRun)
	_, unlock, err := r.begin(ctx)
	if err != nil {
		return r.finish(ResultRefused, err)
	}
	unlock()
	return r.finish(ResultOK, nil)
}

// Upgrade runs the whole flow (op is OpUpgrade or OpRollback: the same flow
// to another image). The report is returned also with an error, which is an
// *Error whose Result says what state the run left.
func (s *Supervisor) Upgrade(ctx context.Context, op Operation) (*Report, error) {
	r := s.newRun(op)
	p, unlock, err := r.begin(ctx)
	if err != nil {
		return r.finish(ResultRefused, err)
	}
	defer unlock()
	newID, err := r.prepare(ctx, p)
	if err != nil {
		return r.rollback(err)
	}
	return r.handOver(ctx, p, newID)
}

// prepare is a1..a3: nothing it does disturbs a LAG, and each step it
// takes is pushed for rollback.
func (r *run) prepare(ctx context.Context, p *plan) (string, error) {
	e, o := r.s.engine, r.s.opts
	r.enter(StageRename)
	if err := e.ContainerRename(ctx, p.old.ID, o.Backup); err != nil {
		return "", fmt.Errorf("rename %s to %s: %w", o.Container, o.Backup, err)
	}
	r.undo = append(r.undo, undoStep{"rename " + o.Backup + " back to " + o.Container, func(ctx context.Context) error {
		return e.ContainerRename(ctx, p.old.ID, o.Container)
	}})
	r.progress("renamed %s to %s", o.Container, o.Backup)
	// A restart policy would bring the old container back after its
	// teamds hand over and exit.
	if rp := p.old.HostConfig.RestartPolicy; !rp.IsNone() && rp.Name != "" {
		if _, err := e.ContainerUpdate(ctx, p.old.ID, container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled}}); err != nil {
			return "", fmt.Errorf("clear the restart policy of %s: %w", o.Backup, err)
		}
		r.undo = append(r.undo, undoStep{"restore the restart policy of " + o.Container, func(ctx context.Context) error {
			_, err := e.ContainerUpdate(ctx, p.old.ID, container.UpdateConfig{RestartPolicy: rp})
			return err
		}})
		r.progress("restart policy %s of %s set aside", rp.Name, o.Backup)
	}
	// Records a failed earlier run may have left would fool a3 and the
	// standbys.
	if err := r.clearHandoffRecords(0); err != nil {
		return "", err
	}

	r.enter(StageStart)
	cfg, hc, nc := newContainerSettings(p.old, p.oldImage, o.Image, p.epoch+1)
	created, err := e.ContainerCreate(ctx, cfg, hc, nc, nil, o.Container)
	if err != nil {
		return "", fmt.Errorf("create the new %s: %w", o.Container, err)
	}
	newID := created.ID
	r.undo = append(r.undo, undoStep{"stop and remove the new " + o.Container, func(ctx context.Context) error {
		return r.removeNew(ctx, newID, p.epoch+1)
	}})
	for _, w := range created.Warnings {
		r.note("docker: %s", w)
	}
	if err := e.ContainerStart(ctx, newID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("start the new %s: %w", o.Container, err)
	}
	if c, err := e.ContainerInspect(ctx, newID); err == nil {
		r.rep.New = containerInfo(c)
	} else {
		r.rep.New = &ContainerInfo{Name: o.Container, ID: newID, Image: o.Image}
	}
	r.progress("started the new %s (%s) from %s: standbys at epoch %d", o.Container, shortID(newID), o.Image, p.epoch+1)

	r.enter(StageReady)
	if err := r.waitReady(ctx, p, newID); err != nil {
		return "", err
	}
	// The last look before the point of no return.
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("interrupted before the cutover: %w", err)
	}
	return newID, nil
}

// waitReady is a3: every LAG's .standby of the new epoch, with the same
// config digest as its .active (the HLD allows no config change).
func (r *run) waitReady(ctx context.Context, p *plan, newID string) error {
	o := r.s.opts
	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	exited, waitErr := r.s.engine.ContainerWait(ctx, newID, container.WaitConditionNotRunning)
	events, err := statefile.WatchOnly(ctx, o.Dir, func(_ string, k proto.Kind) bool { return k == proto.KindStandby })
	if err != nil {
		return err
	}
	want := p.epoch + 1
	ready := map[string]bool{}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for len(ready) < len(p.lags) {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Err != nil {
				r.progress("ignoring %s: %v", orDash(ev.Name), ev.Err)
				continue
			}
			if ev.Removed || ev.Record.RecordEpoch() != want {
				continue
			}
			sb := ev.Record.(*proto.Standby)
			l := p.lag(sb.LAG)
			switch {
			case l == nil:
				return fmt.Errorf("the configuration changed: the new %s runs %s, which the old one does not (the HLD allows no config change during the upgrade)", o.Container, sb.LAG)
			case sb.ConfigDigest != l.active.ConfigDigest:
				return fmt.Errorf("the configuration of %s changed (%s, was %s): the HLD allows no config change during the upgrade", sb.LAG, sb.ConfigDigest, l.active.ConfigDigest)
			}
			if !ready[sb.LAG] {
				ready[sb.LAG] = true
				r.progress("%s ready (%d/%d)", sb.LAG, len(ready), len(p.lags))
			}
		case w := <-exited:
			return fmt.Errorf("the new %s exited (code %d) before every LAG was ready%s", o.Container, w.StatusCode, r.logTail(newID))
		case err := <-waitErr:
			if ctx.Err() == nil {
				return fmt.Errorf("watch the new %s: %w", o.Container, err)
			}
			waitErr = nil
		case <-tick.C:
			r.progress("waiting for %s (%d/%d ready)", strings.Join(missing(p.lagNames(), ready), " "), len(ready), len(p.lags))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready within %v: no standby record from %s", o.ReadyTimeout, strings.Join(missing(p.lagNames(), ready), " "))
			}
			return fmt.Errorf("interrupted before the cutover: %w", ctx.Err())
		}
	}
	return nil
}

func missing(all []string, have map[string]bool) []string {
	return slices.DeleteFunc(slices.Clone(all), func(l string) bool { return have[l] })
}

// logTail is the end of a container's log, for an error message.
func (r *run) logTail(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := r.s.engine.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out strings.Builder
	_, _ = stdcopy.StdCopy(&limited{&out, 4096}, &limited{&out, 4096}, io.LimitReader(rc, 64<<10))
	if s := strings.TrimSpace(out.String()); s != "" {
		return "; its log ends:\n" + s
	}
	return ""
}

// rollback undoes what prepare did, newest first, and reports why.
func (r *run) rollback(cause error) (*Report, error) {
	r.enter(StageRollback)
	r.progress("rolling back: %v", cause)
	// The flow's context may be the interrupted one: the undo gets its own.
	ctx, cancel := context.WithTimeout(context.Background(), 2*r.s.opts.StopTimeout+30*time.Second)
	defer cancel()
	var errs []error
	for i := len(r.undo) - 1; i >= 0; i-- {
		u := r.undo[i]
		if err := u.do(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.what, err))
			r.progress("could not %s: %v", u.what, err)
			continue
		}
		r.progress("%s: done", u.what)
	}
	r.undo = nil
	if r.rep.New != nil {
		r.note("the new container %s was removed", shortID(r.rep.New.ID))
	}
	if len(errs) > 0 {
		return r.finish(ResultRollbackFailed, fmt.Errorf("%w; the rollback is incomplete, look at the containers: %w", cause, errors.Join(errs...)))
	}
	return r.finish(ResultRolledBack, cause)
}

// removeNew stops the new container, so that its standbys exit and remove
// their records, removes it, and removes any standby record it left.
func (r *run) removeNew(ctx context.Context, id string, epoch uint64) error {
	e := r.s.engine
	secs := int((r.s.opts.StopTimeout + time.Second - 1) / time.Second)
	if err := e.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		r.progress("stop %s: %v; removing it by force", shortID(id), err)
	}
	if err := e.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return r.clearHandoffRecords(epoch)
}

// clearHandoffRecords removes standby and snapshot records (of epoch only,
// if it is not 0) and the cutover: what a handoff leaves that a later one
// must not mistake for its own. .active records are never touched.
func (r *run) clearHandoffRecords(epoch uint64) error {
	d, err := statefile.OpenDir(r.s.opts.Dir)
	if err != nil {
		return err
	}
	entries, err := statefile.List(r.s.opts.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, en := range entries {
		switch {
		case en.Kind == proto.KindActive:
			continue
		case epoch != 0 && (en.Record == nil || en.Record.RecordEpoch() != epoch || en.Kind == proto.KindCutover):
			continue
		}
		if err := d.Remove(en.LAG, en.Kind); err != nil {
			errs = append(errs, err)
			continue
		}
		r.s.opts.Logger.Info("removed a leftover record", "file", en.Name)
	}
	return errors.Join(errs...)
}

// handOver is b1..c1. Past b1 nothing is undone: every LAG is followed to
// its new speaker, and the report says how each got there.
func (r *run) handOver(ctx context.Context, p *plan, newID string) (*Report, error) {
	e, o := r.s.engine, r.s.opts
	stop := context.AfterFunc(ctx, func() {
		// Not r.progress: this runs beside the flow's goroutine.
		msg := "interrupt ignored: past the point of no return, every LAG is being handed over"
		r.s.opts.Logger.Warn(msg)
		if r.s.opts.Progress != nil {
			r.s.opts.Progress(Step{Stage: "interrupt", Message: msg, At: time.Now()})
		}
	})
	defer stop()
	ctx = context.WithoutCancel(ctx)

	r.enter(StageCutover)
	d, err := statefile.OpenDir(o.Dir)
	if err != nil {
		return r.rollback(err)
	}
	now := monoclock.Now()
	host, _ := os.Hostname()
	cut := &proto.Cutover{Schema: proto.SchemaVersion, FromEpoch: p.epoch, ToEpoch: p.epoch + 1,
		Writer:      proto.Process{Hostname: host, PID: os.Getpid()},
		StartedMono: now, Started: time.Now(), DeadlineMono: now + int64(o.Deadline), LAGs: p.lagNames()}
	if _, err := d.Write(cut); err != nil {
		// Not written, or written without its directory entry made
		// durable: either way take it back before a standby acts on it.
		_ = d.Remove("", proto.KindCutover)
		return r.rollback(fmt.Errorf("write the cutover record: %w", err))
	}
	r.undo = nil // the point of no return
	if err := e.ContainerKill(ctx, p.old.ID, "SIGUSR1"); err != nil {
		// Two speakers must never be: silence the old one. The standbys
		// take over on their own before the deadline.
		r.note("SIGUSR1 to %s failed (%v): it was killed, and the LAGs taken over without snapshots", o.Backup, err)
		if kerr := e.ContainerKill(ctx, p.old.ID, "SIGKILL"); kerr != nil && !cerrdefs.IsNotFound(kerr) {
			r.note("SIGKILL to %s failed too: %v", o.Backup, kerr)
		}
	}
	r.progress("cutover written (deadline %v), SIGUSR1 sent to %s: no way back now", o.Deadline, o.Backup)

	r.enter(StageTakeover)
	actives := r.waitActive(ctx, p)
	failed := r.verify(p, cut, actives)

	r.enter(StageCleanup)
	retireErr := r.retireOld(ctx, p.old.ID, len(failed) > 0)

	switch {
	case len(failed) > 0:
		return r.finish(ResultFailed, fmt.Errorf("%d of %d LAGs failed: %s", len(failed), len(p.lags), strings.Join(failed, ", ")))
	case retireErr != nil:
		return r.finish(ResultFailed, fmt.Errorf("every LAG was handed over, but %w", retireErr))
	}
	r.progress("every LAG is served by the new %s", o.Container)
	return r.finish(ResultOK, nil)
}

// waitActive is b2/b3: every LAG's .active of the new epoch, or the
// takeover timeout.
func (r *run) waitActive(ctx context.Context, p *plan) map[string]*proto.Active {
	o := r.s.opts
	ctx, cancel := context.WithTimeout(ctx, o.TakeoverTimeout)
	defer cancel()
	got := map[string]*proto.Active{}
	events, err := statefile.WatchOnly(ctx, o.Dir, func(_ string, k proto.Kind) bool { return k == proto.KindActive })
	if err != nil {
		r.note("watching for the takeovers failed: %v", err)
		return got
	}
	for ev := range events {
		if ev.Err != nil || ev.Removed || ev.Record.RecordEpoch() != p.epoch+1 {
			continue
		}
		a := ev.Record.(*proto.Active)
		if p.lag(a.LAG) == nil || got[a.LAG] != nil {
			continue
		}
		got[a.LAG] = a
		r.progress("%s taken over (%s) (%d/%d)", a.LAG, a.Path, len(got), len(p.lags))
		if len(got) == len(p.lags) {
			break
		}
	}
	return got
}

// verify fills each LAG's result from its .active and the old teamd's
// snapshot, and returns the LAGs that failed.
func (r *run) verify(p *plan, cut *proto.Cutover, actives map[string]*proto.Active) []string {
	var failed []string
	for i := range r.rep.LAGs {
		lr := &r.rep.LAGs[i]
		a := actives[lr.LAG]
		if a == nil {
			lr.Result = LAGNoTakeover
			lr.Note = fmt.Sprintf("no .active of epoch %d within %v", p.epoch+1, r.s.opts.TakeoverTimeout)
			failed = append(failed, lr.LAG+" ("+lr.Result+")")
			continue
		}
		lr.Path, lr.Note = a.Path, a.Note
		lr.Result = LAGOK
		if a.Timings.Confirmed == 0 {
			lr.Result = LAGUnconfirmed
			failed = append(failed, lr.LAG+" ("+lr.Result+")")
		} else {
			lr.Takeover = Millis(a.Timings.Confirmed - cut.StartedMono)
		}
		var snap *proto.Snapshot
		if rec, err := statefile.ReadFile(filepath.Join(r.s.opts.Dir, proto.FileName(lr.LAG, proto.KindSnapshot))); err == nil && rec.RecordEpoch() == p.epoch {
			snap = rec.(*proto.Snapshot)
		}
		for j := range lr.Members {
			m := &lr.Members[j]
			if a.Timings.Confirmed == 0 {
				continue
			}
			m.Gap, m.GapFrom = Millis(a.Timings.Confirmed-cut.StartedMono), "cutover"
			if snap != nil && a.Path == proto.PathSnapshot {
				for _, sm := range snap.Members {
					if sm.Name == m.Name && sm.LastTxMono > 0 {
						m.Gap, m.GapFrom = Millis(a.Timings.Confirmed-sm.LastTxMono), "last-pdu"
					}
				}
			}
		}
	}
	return failed
}

// retireOld is c1: the backup exits once its shims have written their
// snapshots; one that does not within the bound is killed. It is removed,
// unless a LAG failed: then it stays, stopped, for its logs. The error says
// what of this did not happen.
func (r *run) retireOld(ctx context.Context, id string, keep bool) error {
	e, o := r.s.engine, r.s.opts
	wctx, cancel := context.WithTimeout(ctx, o.ExitTimeout)
	defer cancel()
	exited, errc := e.ContainerWait(wctx, id, container.WaitConditionNotRunning)
	select {
	case <-exited:
	case err := <-errc:
		if cerrdefs.IsNotFound(err) {
			r.progress("%s is gone (removed on exit)", o.Backup)
			return nil
		}
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
	var exitErr error
	if c, err := e.ContainerInspect(ctx, id); err == nil && c.State != nil {
		code := c.State.ExitCode
		r.rep.Old.ExitCode = &code
		if code != 0 {
			exitErr = fmt.Errorf("%s exited %d%s", o.Backup, code, r.logTail(id))
		}
	}
	if keep || exitErr != nil {
		r.note("%s is kept, stopped, for its logs (docker logs %s); remove it before the next upgrade", o.Backup, o.Backup)
		return exitErr
	}
	if err := e.ContainerRemove(ctx, id, container.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("could not remove %s: %w", o.Backup, err)
	}
	r.progress("%s exited and was removed", o.Backup)
	return nil
}
