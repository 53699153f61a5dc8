package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
)

// Recover finishes or undoes the run whose journal says it did not end
// (its supervisor died, or was killed), from what the journal, the
// containers and the records show. Past the point of no return (the
// cutover record is there, or a LAG is served at the new epoch already) it
// finishes it: SIGUSR1 to the old container if it still runs, every LAG's
// takeover awaited and checked, the old container retired. Before it, it
// undoes it: the new container removed, the old one renamed back, its
// restart policy restored. With no run to recover it does nothing. It takes
// the lock, and running it twice changes nothing the second time.
//
// The report's result is ok for a run finished, rolled-back for one
// undone.
func (s *Supervisor) Recover(ctx context.Context) (*Report, error) {
	r := s.newRun(OpRecover)
	o := s.opts
	r.enter(StagePreflight)
	var err error
	if r.dir, err = openDir(o.Dir); err != nil {
		return r.finish(ResultRefused, err)
	}
	unlock, err := lock(o.Dir, fmt.Sprintf("teamd-warm recover of %s", o.Container))
	if err != nil {
		return r.finish(ResultRefused, err)
	}
	defer unlock()
	if err := checkWritable(o.Dir); err != nil {
		return r.finish(ResultRefused, err)
	}
	j, err := readJournal(o.Dir)
	if err != nil {
		return r.finish(ResultRefused, err)
	}
	if j == nil || j.Stage == proto.JournalDone {
		if j == nil {
			r.note("nothing to recover: no run is recorded in %s", o.Dir)
		} else {
			r.note("nothing to recover: the last run, a %s to %s, ended %s", j.Operation, j.Image, j.Result)
		}
		r.progress("nothing to recover")
		return r.finish(ResultOK, nil)
	}
	if j.Container != o.Container || j.Backup != o.Backup {
		return r.finish(ResultRefused, fmt.Errorf("the interrupted run is of container %s (backup %s), not %s: run recover with --container %s --backup %s",
			j.Container, j.Backup, o.Container, j.Container, j.Backup))
	}
	r.jr = j
	r.rep.Image, r.rep.FromEpoch, r.rep.ToEpoch = j.Image, j.FromEpoch, j.ToEpoch
	r.progress("the %s to %s (epoch %d to %d) stopped at %s %s ago", j.Operation, j.Image, j.FromEpoch, j.ToEpoch, j.Stage, time.Since(j.Updated).Round(time.Second))

	p, newID, err := r.recoverPlan(ctx)
	if err != nil {
		return r.finish(ResultFailed, err)
	}
	defer p.first.close()
	cut, _ := r.dir.Read("", proto.KindCutover)
	if c, ok := cut.(*proto.Cutover); ok && c.ToEpoch == j.ToEpoch {
		r.progress("past the cutover: finishing the run")
		return r.finishForward(ctx, p, newID, c)
	}
	if served := r.servedByNew(p); len(served) > 0 {
		r.progress("%s already served by the new container: finishing the run", strings.Join(served, " "))
		return r.finishForward(ctx, p, newID, nil)
	}
	r.progress("before the cutover: undoing the run")
	return r.undoRun(ctx, p, newID, fmt.Errorf("the %s stopped at %s, before its cutover", j.Operation, j.Stage))
}

// recoverPlan rebuilds the run's plan: the old container (if it is still
// there), the LAGs of the old epoch, and the new container's ID (from the
// journal, or the container under the name started for the new epoch).
func (r *run) recoverPlan(ctx context.Context) (*plan, string, error) {
	e, j := r.s.engine, r.jr
	p := &plan{epoch: j.FromEpoch}
	c, err := e.ContainerInspect(ctx, j.OldID)
	switch {
	case cerrdefs.IsNotFound(err):
		p.old = container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: j.OldID, Name: "/" + j.Backup,
			HostConfig: &container.HostConfig{}}, Config: &container.Config{Image: j.OldImage}}
		r.note("the old container %s is gone", shortID(j.OldID))
	case err != nil:
		return nil, "", err
	default:
		p.old = c
	}
	if p.old.HostConfig == nil {
		p.old.HostConfig = &container.HostConfig{}
	}
	r.rep.Old = containerInfo(p.old)
	if j.RestartPolicy != "" {
		// What the old container had before a1 set it aside.
		p.old.HostConfig.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyMode(j.RestartPolicy), MaximumRetryCount: j.RestartMaxRetries}
	}
	newID := j.NewID
	if newID == "" {
		if c, err := e.ContainerInspect(ctx, j.Container); err == nil && c.ID != j.OldID && containerEpoch(c) == j.ToEpoch {
			newID = c.ID
		}
	}
	if newID != "" {
		if c, err := e.ContainerInspect(ctx, newID); err == nil {
			r.rep.New = containerInfo(c)
		} else if cerrdefs.IsNotFound(err) {
			r.note("the new container %s is gone", shortID(newID))
		}
	}
	entries, err := statefile.List(r.dir.Path())
	if err != nil {
		return nil, "", err
	}
	if j.FirstUpgrade {
		if err := r.recoverFirst(p, entries); err != nil {
			return nil, "", err
		}
	}
	for _, en := range entries {
		if en.Kind != proto.KindActive || en.Record == nil {
			continue
		}
		a := en.Record.(*proto.Active)
		if (a.Epoch == j.FromEpoch || a.Epoch == j.ToEpoch) && p.lag(a.LAG) == nil {
			p.lags = append(p.lags, lagPlan{name: a.LAG, active: a})
		}
	}
	if len(p.lags) == 0 {
		return nil, "", fmt.Errorf("no LAG has a .active of epoch %d or %d in %s", j.FromEpoch, j.ToEpoch, r.dir.Path())
	}
	sortLAGs(p.lags)
	for _, l := range p.lags {
		r.rep.LAGs = append(r.rep.LAGs, lagReport(l))
	}
	return p, newID, nil
}

// recoverFirst rebuilds the old side of an interrupted first upgrade: the
// old container's teamds that still run (those b1 did not stop yet), and
// the LAGs the cutover names whose old teamd is gone and which no .active
// of the new epoch shows yet (their standbys take over once they find the
// old teamd silent).
func (r *run) recoverFirst(p *plan, entries []statefile.Entry) error {
	r.rep.FirstUpgrade = true
	if p.old.State != nil && p.old.State.Running {
		// Those b1 stopped are gone: what runs is left to stop.
		c, err := shimless.Find(p.old.State.Pid)
		if err != nil {
			return fmt.Errorf("the old container %s: %w", shortID(p.old.ID), err)
		}
		f, err := openFirst(c)
		if err != nil {
			return fmt.Errorf("the old container %s: %w", shortID(p.old.ID), err)
		}
		p.first = f
		for lag, t := range f.teamds {
			p.lags = append(p.lags, lagPlan{name: lag, active: firstActive(t, nil, nil, r.jr.Backup), first: true})
		}
	} else {
		p.first = &firstPlan{teamds: map[string]*shimless.Teamd{}}
	}
	for _, en := range entries {
		c, ok := en.Record.(*proto.Cutover)
		if !ok || c.ToEpoch != r.jr.ToEpoch {
			continue
		}
		for _, lag := range c.LAGs {
			if p.lag(lag) == nil {
				p.lags = append(p.lags, lagPlan{name: lag, active: &proto.Active{LAG: lag, Epoch: firstEpoch}, first: true})
			}
		}
	}
	return nil
}

// finishForward is b1..c1 of the interrupted run: the cutover written if
// it was not (the run died between its journal and its record), SIGUSR1
// to the old container, then the rest as the run would have done it.
func (r *run) finishForward(ctx context.Context, p *plan, newID string, cut *proto.Cutover) (*Report, error) {
	if newID == "" {
		return r.finish(ResultFailed, errors.New("past the cutover, but the new container is not there: look at the containers (teamd-warm status)"))
	}
	ctx, stop := r.uninterrupted(ctx)
	defer stop()
	r.enter(StageCutover)
	if err := r.journal(string(StageCutover)); err != nil {
		r.note("%v", err)
	}
	// The run may have died before it gave the new container its shares:
	// it still has the standbys'.
	if c, err := r.s.engine.ContainerInspect(ctx, newID); err == nil && c.HostConfig != nil {
		if s := c.HostConfig.CPUShares; s > 0 && s <= r.s.opts.StandbyCPUShares && s < fullShares(p.old) {
			// It may be idle too (leaving idle is harmless if it is not);
			// if that cannot be told, the shares' update says so.
			if err := r.leaveIdle(ctx, newID); err != nil {
				r.note("the new %s may still be idle: %v", r.s.opts.Container, err)
			}
			p.standbyShares = s
			if err := r.speakingShares(ctx, p, newID, "to finish the run"); err != nil {
				r.warn("%v", err)
			}
		}
	}
	if cut == nil {
		cut = r.newCutover(p)
		if _, err := r.dir.Write(cut); err != nil {
			return r.finish(ResultFailed, fmt.Errorf("write the cutover record: %w", err))
		}
	}
	if p.first != nil {
		var left []string
		for _, lag := range p.first.serving() {
			if a, err := r.dir.Read(lag, proto.KindActive); err != nil || a.RecordEpoch() != r.jr.ToEpoch {
				left = append(left, lag)
			}
		}
		r.stopFirst(ctx, p, cut, left)
	} else {
		r.stopOld(ctx, p.old.ID)
	}
	return r.afterCutover(ctx, p, newID, cut)
}

// undoRun is the rollback of a run that died before its cutover, from the
// journal: every step is done only if it is still to be done. The steps
// are listed in the order the run took them (rollback undoes the newest
// first).
func (r *run) undoRun(ctx context.Context, p *plan, newID string, cause error) (*Report, error) {
	e, o := r.s.engine, r.s.opts
	if _, err := e.ContainerInspect(ctx, p.old.ID); err == nil {
		r.undo = append(r.undo, undoStep{"rename " + o.Backup + " back to " + o.Container, func(ctx context.Context) error {
			return r.renameBack(ctx, p.old.ID, r.jr.ToEpoch)
		}}, undoStep{"restore the restart policy of " + o.Container, func(ctx context.Context) error {
			c, err := e.ContainerInspect(ctx, p.old.ID)
			if err != nil || c.HostConfig == nil || c.HostConfig.RestartPolicy.Name == p.old.HostConfig.RestartPolicy.Name {
				return err
			}
			_, err = e.ContainerUpdate(ctx, p.old.ID, container.UpdateConfig{RestartPolicy: p.old.HostConfig.RestartPolicy})
			return err
		}})
	}
	r.undo = append(r.undo, undoStep{"clear the run's records", func(context.Context) error {
		if err := r.dir.Remove("", proto.KindCutover); err != nil {
			return err
		}
		return clearHandoffRecords(r.dir, r.jr.ToEpoch, o.Logger)
	}})
	if newID != "" {
		r.undo = append(r.undo, undoStep{"stop and remove the new " + o.Container, func(ctx context.Context) error {
			return removeNew(ctx, e, r.dir, newID, r.jr.ToEpoch, o)
		}})
	}
	return r.rollback(cause, p)
}
