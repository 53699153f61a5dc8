package supervisor

import (
	"context"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/teamdwarm/teamdwarm/proto"
)

// ContainerStatus is one of the two containers of the flow.
type ContainerStatus struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
	ID      string `json:"id,omitempty"`
	Image   string `json:"image,omitempty"`
	State   string `json:"state,omitempty"` // Docker's: running, exited, ...
	Started string `json:"started,omitempty"`
	// Role is the shims' role from the container's environment: standby
	// for a container a supervisor started, active otherwise.
	Role  string `json:"role,omitempty"`
	Epoch string `json:"epoch,omitempty"`
}

// Status is the state the flow would start from, or an interrupted run
// left: the container and its backup, and who holds the lock.
type Status struct {
	Dir        string            `json:"dir"`
	Lock       string            `json:"lock,omitempty"` // the holder, if the lock is held
	Containers []ContainerStatus `json:"containers"`
}

// Status looks at the containers and the lock; it changes nothing.
func (s *Supervisor) Status(ctx context.Context) (*Status, error) {
	st := &Status{Dir: s.opts.Dir, Lock: lockHolder(s.opts.Dir)}
	for _, name := range []string{s.opts.Container, s.opts.Backup} {
		cs := ContainerStatus{Name: name}
		c, err := s.engine.ContainerInspect(ctx, name)
		switch {
		case cerrdefs.IsNotFound(err):
		case err != nil:
			return nil, err
		default:
			cs.Present, cs.ID = true, c.ID
			if c.Config != nil {
				cs.Image = c.Config.Image
				for _, kv := range c.Config.Env {
					if v, ok := strings.CutPrefix(kv, proto.EnvRole+"="); ok {
						cs.Role = v
					}
					if v, ok := strings.CutPrefix(kv, proto.EnvEpoch+"="); ok {
						cs.Epoch = v
					}
				}
			}
			if c.State != nil {
				cs.State, cs.Started = c.State.Status, c.State.StartedAt
			}
		}
		st.Containers = append(st.Containers, cs)
	}
	return st, nil
}
