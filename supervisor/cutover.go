package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

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
