package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// prepare is a1..a3: nothing it does disturbs a LAG, and each step it
// takes is pushed for rollback. The journal is written before each step.
func (r *run) prepare(ctx context.Context, p *plan) (string, error) {
	e, o := r.s.engine, r.s.opts
	r.enter(StageRename)
	if err := r.journal(string(StageRename)); err != nil {
		return "", err
	}
	if err := e.ContainerRename(ctx, p.old.ID, o.Backup); err != nil {
		return "", fmt.Errorf("rename %s to %s: %w", o.Container, o.Backup, err)
	}
	r.undo = append(r.undo, undoStep{"rename " + o.Backup + " back to " + o.Container, func(ctx context.Context) error {
		return r.renameBack(ctx, p.old.ID, p.epoch+1)
	}})
	r.progress("renamed %s to %s", o.Container, o.Backup)
	// A restart policy would bring the old container back after its
	// teamds hand over and exit. The journal holds it already.
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
	if err := clearHandoffRecords(r.dir, 0, o.Logger); err != nil {
		return "", err
	}

	r.enter(StageStart)
	if err := r.journal(string(StageStart)); err != nil {
		return "", err
	}
	cfg, hc, nc := newContainerSettings(p.old, p.oldImage, o.Image, p.epoch+1)
	if s := o.StandbyCPUShares; s > 0 && (hc.CPUShares == 0 || s < hc.CPUShares) {
		hc.CPUShares, p.standbyShares = s, s
	}
	created, err := e.ContainerCreate(ctx, cfg, hc, nc, nil, o.Container)
	if err != nil {
		return "", fmt.Errorf("create the new %s: %w", o.Container, err)
	}
	newID := created.ID
	r.undo = append(r.undo, undoStep{"stop and remove the new " + o.Container, func(ctx context.Context) error {
		return removeNew(ctx, e, r.dir, newID, p.epoch+1, o)
	}})
	r.jr.NewID = newID
	if err := r.journal(string(StageStart)); err != nil {
		return "", err
	}
	for _, w := range created.Warnings {
		r.note("docker: %s", w)
	}
	if err := e.ContainerStart(ctx, newID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("start the new %s: %w", o.Container, err)
	}
	pid := 0
	if c, err := e.ContainerInspect(ctx, newID); err == nil {
		r.rep.New = containerInfo(c)
		if c.State != nil {
			pid = c.State.Pid
		}
	} else {
		r.rep.New = &ContainerInfo{Name: o.Container, ID: newID, Image: o.Image}
	}
	behind := ""
	if p.standbyShares > 0 {
		idle := "idle and "
		if err := r.standbyIdle(p, pid); err != nil {
			idle = ""
			r.note("the new %s's standbys stand behind at %d CPU shares only: %v", o.Container, p.standbyShares, err)
		}
		behind = fmt.Sprintf(", %sat %d CPU shares until the cutover", idle, p.standbyShares)
	}
	r.progress("started the new %s (%s) from %s: standbys at epoch %d%s", o.Container, shortID(newID), o.Image, p.epoch+1, behind)

	r.enter(StageReady)
	if err := r.journal(string(StageReady)); err != nil {
		return "", err
	}
	for {
		if err := r.waitReady(ctx, p, newID); err != nil {
			return "", err
		}
		// The last look before the point of no return: every standby's
		// shim alive (a record outlives its writer), the new container
		// running and not paused.
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("interrupted before the cutover: %w", err)
		}
		dead, err := r.standbysAlive(ctx, p, newID)
		if err != nil {
			return "", err
		}
		if len(dead) == 0 {
			return newID, nil
		}
		// Its container's init restarts a dead shim, which announces
		// itself anew: wait for that, within a3's bound.
		r.progress("the standby shims of %s died after they were ready: waiting for them to be restarted and ready again", strings.Join(dead, " "))
		for _, l := range dead {
			p.lag(l).deadStandby = true
		}
	}
}

// standbysAlive checks what a3's records cannot show: that the new
// container runs (a paused one is unpaused: its standbys would miss their
// takeover) and that the shim behind every .standby still lives. It
// returns the LAGs whose standby shim died.
func (r *run) standbysAlive(ctx context.Context, p *plan, newID string) ([]string, error) {
	e, o := r.s.engine, r.s.opts
	c, err := e.ContainerInspect(ctx, newID)
	if err != nil {
		return nil, fmt.Errorf("the new %s: %w", o.Container, err)
	}
	if c.State == nil || !c.State.Running {
		return nil, fmt.Errorf("the new %s is not running (%s) at the cutover", o.Container, stateOf(c))
	}
	if c.State.Paused {
		if err := e.ContainerUnpause(ctx, newID); err != nil {
			return nil, fmt.Errorf("the new %s is paused and could not be unpaused: %w", o.Container, err)
		}
		r.warn("the new %s was paused during a3: unpaused it (a paused standby cannot take over)", o.Container)
	}
	var dead []string
	for _, l := range p.lags {
		if _, alive, err := r.dir.Alive(l.name, p.epoch+1); err != nil {
			return nil, err
		} else if !alive {
			dead = append(dead, l.name)
		}
	}
	return dead, nil
}

// waitReady is a3: every LAG's .standby of the new epoch, with the same
// config digest as its .active (the HLD allows no config change). A LAG
// marked deadStandby needs a .standby written after the dead one's.
func (r *run) waitReady(ctx context.Context, p *plan, newID string) error {
	o := r.s.opts
	ctx, cancel := context.WithTimeout(ctx, r.readyLeft())
	defer cancel()
	exited, waitErr := r.s.engine.ContainerWait(ctx, newID, container.WaitConditionNotRunning)
	events, err := statefile.WatchOnly(ctx, o.Dir, func(_ string, k proto.Kind) bool { return k == proto.KindStandby || k == proto.KindActive })
	if err != nil {
		return err
	}
	want := p.epoch + 1
	ready := map[string]bool{}
	for _, l := range p.lags {
		if l.readyMono != 0 && !l.deadStandby {
			ready[l.name] = true
		}
	}
	tick := time.NewTicker(o.WaitingEvery)
	defer tick.Stop()
	tl := r.newTally("ready", len(p.lags))
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
			if a, ok := ev.Record.(*proto.Active); ok {
				// A standby took its LAG over on its own (its old speaker
				// died): that teamd speaks now, and must not wait behind
				// the old ones.
				if err := r.speakingShares(ctx, p, newID, a.LAG+" is served by it already"); err != nil {
					r.warn("%v; tried again at b1", err)
				}
				continue
			}
			sb := ev.Record.(*proto.Standby)
			l := p.lag(sb.LAG)
			switch {
			case l == nil:
				return fmt.Errorf("the configuration changed: the new %s runs %s, which the old one does not (the HLD allows no config change during the upgrade)", o.Container, sb.LAG)
			case sb.ConfigDigest != l.active.ConfigDigest:
				return fmt.Errorf("the configuration of %s changed (%s, was %s): the HLD allows no config change during the upgrade", sb.LAG, sb.ConfigDigest, l.active.ConfigDigest)
			case l.deadStandby && sb.ReadyMono <= l.readyMono:
				continue // the dead shim's record
			}
			l.readyMono, l.deadStandby = sb.ReadyMono, false
			if !ready[sb.LAG] {
				ready[sb.LAG] = true
				tl.add(sb.LAG, "")
			}
		case w := <-exited:
			return fmt.Errorf("the new %s exited (code %d) before every LAG was ready%s", o.Container, w.StatusCode, r.logTail(newID))
		case err := <-waitErr:
			if ctx.Err() == nil {
				return fmt.Errorf("watch the new %s: %w", o.Container, err)
			}
			waitErr = nil
		case <-tick.C:
			r.progress("waiting for %s (%d/%d ready)", someNames(missing(p.lagNames(), ready), tallyNames), len(ready), len(p.lags))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready within %v: no standby record from %s", o.ReadyTimeout, strings.Join(missing(p.lagNames(), ready), " "))
			}
			return fmt.Errorf("interrupted before the cutover: %w", ctx.Err())
		}
	}
	return nil
}

// readyLeft is what remains of a3's bound.
func (r *run) readyLeft() time.Duration {
	return max(r.s.opts.ReadyTimeout-time.Since(r.stageStart), time.Millisecond)
}

// missing lists the names in all that have has no entry for, in order.
func missing[V any](all []string, have map[string]V) []string {
	return slices.DeleteFunc(slices.Clone(all), func(l string) bool { _, ok := have[l]; return ok })
}

// logTail is the end of a container's log, for an error message.
func (r *run) logTail(id string) string { return logTail(r.s.engine, id) }

func logTail(e Engine, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := e.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
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

// rollback undoes what prepare did, newest first, and reports why. The
// result is what the containers show afterwards, not what the steps
// returned: a step that failed on something already undone (a container
// gone by itself) leaves a complete rollback.
func (r *run) rollback(cause error, p *plan) (*Report, error) {
	r.enter(StageRollback)
	if err := r.journal(string(StageRollback)); err != nil {
		r.note("%v", err)
	}
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
	if p == nil {
		if len(errs) > 0 {
			return r.finish(ResultRollbackFailed, fmt.Errorf("%w; the rollback is incomplete, look at the containers: %w", cause, errors.Join(errs...)))
		}
		return r.finish(ResultRolledBack, cause)
	}
	left := restoredState(ctx, r.s.engine, r.s.opts, p.old.ID, p.old.HostConfig.RestartPolicy, newIDOf(r.jr))
	if len(left) > 0 {
		return r.finish(ResultRollbackFailed, fmt.Errorf("%w; the rollback is incomplete (%s), look at the containers: %w", cause, strings.Join(left, "; "), errors.Join(errs...)))
	}
	for _, err := range errs {
		r.note("a rollback step failed, but its work was done: %v", err)
	}
	if c, err := r.s.engine.ContainerInspect(ctx, p.old.ID); err == nil && (c.State == nil || !c.State.Running) {
		r.warn("%s is back under its name but not running (%s): its LAGs have no speaker; start it (docker start %s)", r.s.opts.Container, stateOf(c), r.s.opts.Container)
	}
	return r.finish(ResultRolledBack, cause)
}

func newIDOf(j *proto.Journal) string {
	if j == nil {
		return ""
	}
	return j.NewID
}

// restoredState lists what differs from the state before a run: the old
// container under its name with its restart policy, no new container.
func restoredState(ctx context.Context, e Engine, o Options, oldID string, policy container.RestartPolicy, newID string) []string {
	var left []string
	c, err := e.ContainerInspect(ctx, o.Container)
	switch {
	case err != nil:
		left = append(left, fmt.Sprintf("no container %s (%v)", o.Container, err))
	case c.ID != oldID:
		left = append(left, fmt.Sprintf("%s is %s, not the old container %s", o.Container, shortID(c.ID), shortID(oldID)))
	case c.HostConfig != nil && c.HostConfig.RestartPolicy.Name != policy.Name && !(policy.IsNone() && c.HostConfig.RestartPolicy.IsNone()):
		left = append(left, fmt.Sprintf("%s's restart policy is %q, was %q", o.Container, c.HostConfig.RestartPolicy.Name, policy.Name))
	}
	if newID != "" {
		if _, err := e.ContainerInspect(ctx, newID); err == nil {
			left = append(left, fmt.Sprintf("the new container %s is still there", shortID(newID)))
		} else if !cerrdefs.IsNotFound(err) {
			left = append(left, fmt.Sprintf("the new container %s: %v", shortID(newID), err))
		}
	}
	return left
}

// renameBack gives the old container its name back, unless it has it.
//
// The name may be held by a new container whose ID the run never learnt:
// dockerd finishes a create whose client was killed or gave up, and until
// it has, the name is taken but no container shows it. A holder started
// for the run's epoch is that container: it is removed, and the rename
// tried again once a create in flight has landed. Any other holder is not
// the run's to remove, and fails the step.
func (r *run) renameBack(ctx context.Context, oldID string, epoch uint64) error {
	e, o := r.s.engine, r.s.opts
	if c, err := e.ContainerInspect(ctx, oldID); err == nil && strings.TrimPrefix(c.Name, "/") == o.Container {
		return nil
	}
	waited := false
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := e.ContainerRename(ctx, oldID, o.Container)
		if err == nil || !cerrdefs.IsConflict(err) {
			return err
		}
		c, ierr := e.ContainerInspect(ctx, o.Container)
		switch {
		case ierr == nil && c.ID != oldID && containerEpoch(c) == epoch:
			r.progress("%s (%s), a new container for epoch %d the run did not record, holds the name: removing it", o.Container, shortID(c.ID), epoch)
			if err := removeNew(ctx, e, r.dir, c.ID, epoch, o); err != nil {
				return fmt.Errorf("remove %s (%s), the new container for epoch %d under the name: %w", o.Container, shortID(c.ID), epoch, err)
			}
			continue
		case ierr == nil || !cerrdefs.IsNotFound(ierr):
			return err
		}
		// The name is taken and nothing shows it: a create in flight.
		if !waited {
			r.progress("the name %s is taken by a container still being created: waiting for its create to land", o.Container)
			waited = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (a container being created holds the name, and its create did not finish: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// removeNew stops the new container, so that its standbys exit and remove
// their records, removes it, and removes any standby record it left.
func removeNew(ctx context.Context, e Engine, d *statefile.Dir, id string, epoch uint64, o Options) error {
	secs := int((o.StopTimeout + time.Second - 1) / time.Second)
	if c, err := e.ContainerInspect(ctx, id); err == nil && c.State != nil && c.State.Paused {
		_ = e.ContainerUnpause(ctx, id) // a paused container's standbys cannot withdraw their records
	}
	if err := e.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		o.Logger.Info("stop failed; removing by force", "container", shortID(id), "err", err)
	}
	if err := e.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return clearHandoffRecords(d, epoch, o.Logger)
}

// clearHandoffRecords removes standby and snapshot records (of epoch only,
// if it is not 0) and the cutover: what a handoff leaves that a later one
// must not mistake for its own. .active records and the journal are never
// touched.
func clearHandoffRecords(d *statefile.Dir, epoch uint64, log *slog.Logger) error {
	entries, err := statefile.List(d.Path())
	if err != nil {
		return err
	}
	var errs []error
	for _, en := range entries {
		switch {
		case en.Kind == proto.KindActive || en.Kind == proto.KindJournal:
			continue
		case epoch != 0 && (en.Record == nil || en.Record.RecordEpoch() != epoch || en.Kind == proto.KindCutover):
			continue
		}
		if err := d.Remove(en.LAG, en.Kind); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("removed a leftover record", "file", en.Name)
	}
	return errors.Join(errs...)
}

// stateOf says in a few words what state a container is in.
func stateOf(c container.InspectResponse) string {
	if c.State == nil {
		return "state unknown"
	}
	switch {
	case c.State.Paused:
		return "paused"
	case c.State.Running:
		return "running"
	case c.State.Status == "exited":
		return fmt.Sprintf("exited %d", c.State.ExitCode)
	}
	return c.State.Status
}
