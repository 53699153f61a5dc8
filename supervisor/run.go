package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"time"

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
	dir        *statefile.Dir
	jr         *proto.Journal // nil for a dry run
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

// warn records something the operator should act on, in a run whose
// result it does not change.
func (r *run) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.rep.Warnings = append(r.rep.Warnings, msg)
	r.s.opts.Logger.Warn(msg, "stage", r.stage)
	if r.s.opts.Progress != nil {
		r.s.opts.Progress(Step{Stage: r.stage, Message: "warning: " + msg, At: time.Now()})
	}
}

// finish closes the report and the journal; err, if any, is returned as an
// *Error.
func (r *run) finish(res Result, err error) (*Report, error) {
	r.enter("")
	r.rep.Took = Millis(time.Since(r.rep.Started))
	r.rep.Result = res
	if res != ResultRefused {
		r.endJournal(res, err)
	}
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
	o := r.s.opts
	var err error
	if r.dir, err = openDir(o.Dir); err != nil {
		return nil, nil, err
	}
	// The lock before anything is written: a second run gets the lock's
	// message, not a race on the first one's files.
	unlock, err := lock(o.Dir, fmt.Sprintf("teamd-warm %s of %s to %s", r.rep.Operation, o.Container, o.Image))
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, nil, fmt.Errorf("record directory %s is not writable: %w", o.Dir, err)
		}
		return nil, nil, err
	}
	if err := checkWritable(o.Dir); err != nil {
		unlock()
		return nil, nil, err
	}
	if err := pendingRun(o.Dir, o); err != nil {
		unlock()
		return nil, nil, err
	}
	p, err := r.preflight(ctx)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	if p.first != nil {
		r.progress("%d LAGs served by teamds without teamd-shim in %s (%s): a first upgrade, to epoch %d; image %s present", len(p.lags),
			r.s.opts.Container, shortID(p.old.ID), p.epoch+1, r.s.opts.Image)
	} else {
		r.progress("%d LAGs at epoch %d in %s (%s), image %s present", len(p.lags), p.epoch,
			r.s.opts.Container, shortID(p.old.ID), r.s.opts.Image)
	}
	return p, unlock, nil
}

// servedByNew lists the LAGs with a .active of the new epoch.
func (r *run) servedByNew(p *plan) []string {
	var out []string
	for _, l := range p.lags {
		if rec, err := r.dir.Read(l.name, proto.KindActive); err == nil && rec.RecordEpoch() == p.epoch+1 {
			out = append(out, l.name)
		}
	}
	return out
}

// DryRun runs preflight only and reports, per LAG, its rate, members and
// the budget a handoff would have.
func (s *Supervisor) DryRun(ctx context.Context) (*Report, error) {
	r := s.newRun(OpDryRun)
	p, unlock, err := r.begin(ctx)
	if err != nil {
		return r.finish(ResultRefused, err)
	}
	p.first.close()
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
	defer p.first.close()
	r.newJournal(p)
	newID, err := r.prepare(ctx, p)
	if err != nil {
		if served := r.servedByNew(p); len(served) > 0 && r.jr.NewID != "" {
			// A standby took a LAG over on its own (its old speaker died):
			// removing the new container would silence it.
			r.warn("%v; but %s already served by the new %s (their old speakers died or stopped), so the run goes on instead of rolling back",
				err, strings.Join(served, " "), r.s.opts.Container)
			return r.handOver(ctx, p, r.jr.NewID)
		}
		return r.rollback(err, p)
	}
	return r.handOver(ctx, p, newID)
}
