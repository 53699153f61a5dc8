package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// Status is where the teamd container stands: the last run, the two
// containers of the flow, the lock and, per LAG, who serves it. Who serves
// a LAG is told by the records and the shims' liveness locks (a record
// outlives its writer), not by a container's environment: a container
// started as a standby may serve its LAGs now.
type Status struct {
	Dir        string            `json:"dir"`
	Lock       string            `json:"lock,omitempty"` // the holder, if the lock is held
	Run        *RunStatus        `json:"run,omitempty"`
	Containers []ContainerStatus `json:"containers"`
	LAGs       []LAGStatus       `json:"lags"`
	// Problems are what is wrong now; Next is the command that finishes
	// or undoes an interrupted run, or what to do about the problems.
	Problems []string `json:"problems,omitempty"`
	Next     string   `json:"next,omitempty"`
}

// RunStatus is the last run, from its journal.
type RunStatus struct {
	Operation string    `json:"operation"`
	Image     string    `json:"image"`
	FromEpoch uint64    `json:"from_epoch"`
	ToEpoch   uint64    `json:"to_epoch"`
	Stage     string    `json:"stage"` // "done" once it ended
	Result    string    `json:"result,omitempty"`
	Error     string    `json:"error,omitempty"`
	Started   time.Time `json:"started"`
	Updated   time.Time `json:"updated"`
	By        string    `json:"by"`
	// Running: its supervisor holds the lock now. Interrupted: it did not
	// end and no supervisor runs it.
	Running     bool `json:"running"`
	Interrupted bool `json:"interrupted"`
}

// ContainerStatus is one of the two containers of the flow.
type ContainerStatus struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
	ID      string `json:"id,omitempty"`
	Image   string `json:"image,omitempty"`
	State   string `json:"state,omitempty"` // running, paused, exited N, ...
	Started string `json:"started,omitempty"`
	// Epoch is the epoch its shims were started with (0: not given, a
	// container teamd-warm did not create). Serves and Standbys are the
	// LAGs it speaks for and those it waits to take over.
	Epoch    uint64   `json:"epoch,omitempty"`
	Serves   []string `json:"serves"`
	Standbys []string `json:"standbys"`
}

// LAGStatus is one LAG: its speaker by its .active record and whether
// that record's shim lives, and a waiting standby if any.
type LAGStatus struct {
	LAG      string     `json:"lag"`
	Epoch    uint64     `json:"epoch"` // of its .active, 0 if none
	Path     proto.Path `json:"path,omitempty"`
	ServedBy string     `json:"served_by,omitempty"` // the container, "" if none found
	// Alive: the shim of the .active's epoch runs. LockUnknown: it
	// holds no liveness lock to tell (an earlier teamdwarm).
	Alive       bool   `json:"alive"`
	LockUnknown bool   `json:"lock_unknown,omitempty"`
	Standby     uint64 `json:"standby_epoch,omitempty"` // a live standby's epoch
	// NoShim names the teamd that serves the LAG without teamd-shim
	// (SONiC's container, before its first upgrade): "teamd pid N".
	NoShim  string `json:"no_shim,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// Status looks at the journal, the containers, the records and the
// liveness locks; it changes nothing.
func (s *Supervisor) Status(ctx context.Context) (*Status, error) {
	o := s.opts
	st := &Status{Dir: o.Dir, Lock: lockHolder(o.Dir), Containers: []ContainerStatus{}, LAGs: []LAGStatus{}}
	d, err := openDir(o.Dir)
	if err != nil {
		return nil, err
	}
	j, err := readJournal(o.Dir)
	if err != nil {
		st.Problems = append(st.Problems, err.Error())
	}
	if j != nil {
		st.Run = &RunStatus{Operation: j.Operation, Image: j.Image, FromEpoch: j.FromEpoch, ToEpoch: j.ToEpoch,
			Stage: j.Stage, Result: j.Result, Error: j.Error, Started: j.Started, Updated: j.Updated,
			By: fmt.Sprintf("teamd-warm pid %d on %s", j.Writer.PID, j.Writer.Hostname)}
		if j.Stage != proto.JournalDone {
			st.Run.Running = st.Lock != ""
			st.Run.Interrupted = !st.Run.Running
		}
	}
	pids := map[string]int{} // running containers' inits, by name
	for _, name := range []string{o.Container, o.Backup} {
		cs := ContainerStatus{Name: name, Serves: []string{}, Standbys: []string{}}
		c, err := s.engine.ContainerInspect(ctx, name)
		switch {
		case cerrdefs.IsNotFound(err):
		case err != nil:
			return nil, err
		default:
			cs.Present, cs.ID, cs.Epoch, cs.State = true, c.ID, containerEpoch(c), stateOf(c)
			if c.Config != nil {
				cs.Image = c.Config.Image
			}
			if c.State != nil {
				cs.Started = c.State.StartedAt
				if c.State.Running {
					pids[name] = c.State.Pid
				}
			}
		}
		st.Containers = append(st.Containers, cs)
	}
	if err := st.lags(d); err != nil {
		return nil, err
	}
	st.shimless(pids)
	st.advise(o)
	return st, nil
}

// lags fills the per-LAG view from the .active records and the locks.
func (st *Status) lags(d *statefile.Dir) error {
	entries, err := statefile.List(d.Path())
	if err != nil {
		return err
	}
	lives, err := d.Lives()
	if err != nil {
		return err
	}
	live := map[string]map[uint64]bool{} // LAG -> epoch -> held
	for _, l := range lives {
		if live[l.LAG] == nil {
			live[l.LAG] = map[uint64]bool{}
		}
		live[l.LAG][l.Epoch] = l.Held
	}
	for _, e := range entries {
		if e.Kind != proto.KindActive {
			continue
		}
		ls := LAGStatus{LAG: e.LAG}
		if e.Err != nil {
			ls.Problem = e.Err.Error()
			st.LAGs = append(st.LAGs, ls)
			continue
		}
		a := e.Record.(*proto.Active)
		ls.Epoch, ls.Path = a.Epoch, a.Path
		held, known := live[a.LAG][a.Epoch]
		ls.Alive, ls.LockUnknown = held || !known, !known
		for epoch, held := range live[a.LAG] {
			if held && epoch > a.Epoch {
				ls.Standby = epoch
			}
		}
		if c := st.containerOf(a.Epoch); c != nil && ls.Alive {
			ls.ServedBy = c.Name
			c.Serves = append(c.Serves, a.LAG)
		}
		if c := st.containerOf(ls.Standby); ls.Standby != 0 && c != nil {
			c.Standbys = append(c.Standbys, a.LAG)
		}
		switch {
		case !ls.Alive:
			ls.Problem = fmt.Sprintf("no live shim: the one of epoch %d that wrote .active (%s) is gone, so nothing speaks for it", a.Epoch, writerOf(a.Writer))
		case ls.ServedBy == "":
			ls.Problem = fmt.Sprintf("served at epoch %d by a container that is neither %s nor %s", a.Epoch, st.Containers[0].Name, st.Containers[1].Name)
		}
		st.LAGs = append(st.LAGs, ls)
	}
	slices.SortFunc(st.LAGs, func(a, b LAGStatus) int { return teamd.CompareNames(a.LAG, b.LAG) })
	return nil
}

// shimless adds the LAGs served by teamds without teamd-shim in the
// running containers (inits by name), which no record shows: at epoch 1,
// as a first upgrade takes them.
func (st *Status) shimless(inits map[string]int) {
	for i := range st.Containers {
		c := &st.Containers[i]
		init, ok := inits[c.Name]
		if !ok {
			continue
		}
		found, err := shimless.Find(init)
		if err != nil || found.Shims > 0 {
			continue
		}
		for _, t := range found.Teamds {
			if slices.ContainsFunc(st.LAGs, func(l LAGStatus) bool { return l.LAG == t.LAG && l.Alive }) {
				continue
			}
			st.LAGs = slices.DeleteFunc(st.LAGs, func(l LAGStatus) bool { return l.LAG == t.LAG })
			st.LAGs = append(st.LAGs, LAGStatus{LAG: t.LAG, Epoch: firstEpoch, ServedBy: c.Name, Alive: true, NoShim: fmt.Sprintf("teamd pid %d", t.PID)})
			c.Serves = append(c.Serves, t.LAG)
		}
	}
	slices.SortFunc(st.LAGs, func(a, b LAGStatus) int { return teamd.CompareNames(a.LAG, b.LAG) })
}

// containerOf is the present container whose shims run at epoch: the one
// started with it, or else the one started with none (the container
// teamd-warm did not create, whose shims took the epoch of the records).
func (st *Status) containerOf(epoch uint64) *ContainerStatus {
	if epoch == 0 {
		return nil
	}
	var unnumbered *ContainerStatus
	for i := range st.Containers {
		c := &st.Containers[i]
		switch {
		case !c.Present:
		case c.Epoch == epoch:
			return c
		case c.Epoch == 0:
			unnumbered = c
		}
	}
	return unnumbered
}

// advise says what is wrong and the command that deals with it.
func (st *Status) advise(o Options) {
	for _, l := range st.LAGs {
		if l.Problem != "" {
			st.Problems = append(st.Problems, l.LAG+": "+l.Problem)
		}
	}
	bak := st.Containers[1]
	switch {
	case st.Run != nil && st.Run.Running:
		st.Next = fmt.Sprintf("wait: %s runs (%s, at %s)", st.Run.By, st.Lock, st.Run.Stage)
	case st.Run != nil && st.Run.Interrupted:
		st.Problems = append(st.Problems, fmt.Sprintf("the %s to %s (epoch %d to %d) was interrupted at %s, %s ago",
			st.Run.Operation, st.Run.Image, st.Run.FromEpoch, st.Run.ToEpoch, st.Run.Stage, time.Since(st.Run.Updated).Round(time.Second)))
		st.Next = recoverCommand(o)
	case bak.Present && len(bak.Serves) == 0:
		st.Problems = append(st.Problems, fmt.Sprintf("%s exists but serves no LAG", bak.Name))
		st.Next = "docker rm -f " + bak.Name
	case bak.Present:
		st.Next = fmt.Sprintf("%s serves %s: no run is recorded that teamd-warm recover could finish; look at the containers", bak.Name, strings.Join(bak.Serves, " "))
	case len(st.Problems) > 0 && st.Containers[0].Present:
		st.Next = fmt.Sprintf("a LAG without a live shim: %s's init restarts a shim that dies; if it stays so, docker restart %s (which restarts every LAG of it)",
			st.Containers[0].Name, st.Containers[0].Name)
	}
}
