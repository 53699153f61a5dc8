package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
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
