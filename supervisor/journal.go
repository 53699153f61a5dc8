package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// The journal is the run's account of itself in the record directory
// (proto.Journal, file "journal"), written durably before each step, so
// that a run whose supervisor died can be finished or undone by Recover,
// and Status can say where it stands. It stays after the run with stage
// "done" and the run's result.

// readJournal reads the directory's journal; nil if there is none.
func readJournal(dir string) (*proto.Journal, error) {
	rec, err := statefile.ReadFile(filepath.Join(dir, proto.FileName("", proto.KindJournal)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the run journal: %w", err)
	}
	return rec.(*proto.Journal), nil
}

// pendingRun refuses to start a run over one that did not end: its journal
// says what to do instead.
func pendingRun(dir string, o Options) error {
	j, err := readJournal(dir)
	if err != nil {
		return fmt.Errorf("%w (remove it only if no run is in progress: rm %s/journal)", err, dir)
	}
	if j == nil || j.Stage == proto.JournalDone {
		return nil
	}
	return fmt.Errorf("an earlier %s of %s to %s (epoch %d to %d) did not end: it stopped at %s, %s ago; finish or undo it first: %s",
		j.Operation, j.Container, j.Image, j.FromEpoch, j.ToEpoch, j.Stage, time.Since(j.Updated).Round(time.Second), recoverCommand(o))
}

// recoverCommand is the command that finishes or undoes an interrupted
// run with these options.
func recoverCommand(o Options) string {
	cmd := "teamd-warm recover"
	if o.Container != DefaultContainer {
		cmd += " --container " + o.Container
	}
	if o.Backup != o.Container+BackupSuffix {
		cmd += " --backup " + o.Backup
	}
	if o.Dir != DefaultDir {
		cmd += " --dir " + o.Dir
	}
	return cmd
}

// journal writes the run's journal at stage. Before the cutover a journal
// that cannot be written stops the run (the caller rolls back: without it a
// crash would leave a state no command knows); past it the run goes on and
// the failure is noted.
func (r *run) journal(stage string) error {
	j := r.jr
	if j == nil {
		return nil
	}
	j.Stage, j.Updated = stage, time.Now()
	if _, err := r.dir.Write(j); err != nil {
		return fmt.Errorf("write the run journal (stage %s): %w", stage, err)
	}
	return nil
}

// newJournal starts the run's journal from the plan.
func (r *run) newJournal(p *plan) {
	o := r.s.opts
	host, _ := os.Hostname()
	r.jr = &proto.Journal{
		Schema: proto.SchemaVersion, Operation: string(r.rep.Operation), Container: o.Container, Backup: o.Backup,
		Image: o.Image, OldID: p.old.ID, OldImage: p.old.Config.Image, FromEpoch: p.epoch, ToEpoch: p.epoch + 1,
		Writer: proto.Process{Hostname: host, PID: os.Getpid()}, Started: r.rep.Started, FirstUpgrade: p.first != nil,
	}
	if rp := p.old.HostConfig.RestartPolicy; !rp.IsNone() && rp.Name != "" {
		r.jr.RestartPolicy, r.jr.RestartMaxRetries = string(rp.Name), rp.MaximumRetryCount
	}
}

// endJournal records how the run ended.
func (r *run) endJournal(res Result, err error) {
	if r.jr == nil {
		return
	}
	r.jr.Result = string(res)
	if err != nil {
		r.jr.Error = err.Error()
	}
	if jerr := r.journal(proto.JournalDone); jerr != nil {
		r.warn("%v: status and recover will think the run still runs", jerr)
	}
}
