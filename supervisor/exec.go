package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// maxExecOutput bounds what an exec may print: a StateDump of 64 ports is
// about 60 KiB.
const maxExecOutput = 4 << 20

// execTimeout bounds one exec; teamdctl itself gives up after 5 s.
const execTimeout = 8 * time.Second

// exec runs argv in a running container and returns its standard output;
// a non-zero exit is an error with its standard error.
func (s *Supervisor) exec(ctx context.Context, id string, argv []string) ([]byte, error) {
	return s.execFor(ctx, id, argv, execTimeout)
}

// execFor is exec with its own bound.
func (s *Supervisor) execFor(ctx context.Context, id string, argv []string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ec, err := s.engine.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, err
	}
	hj, err := s.engine.ContainerExecAttach(ctx, ec.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, err
	}
	defer hj.Close()
	stop := context.AfterFunc(ctx, hj.Close) // the hijacked stream knows no context
	defer stop()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&limited{&stdout, maxExecOutput}, &limited{&stderr, 4096}, hj.Reader); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	ins, err := s.engine.ContainerExecInspect(ctx, ec.ID)
	if err != nil {
		return nil, err
	}
	if ins.ExitCode != 0 {
		return nil, fmt.Errorf("%s: exit %d: %s", strings.Join(argv, " "), ins.ExitCode, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// limited keeps the first n bytes written to it and drops the rest, so a
// runaway command cannot make the supervisor allocate without bound.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// teamdState asks a LAG's teamd in container id for its state, the way an
// operator does: teamdctl <lag> state dump.
func (s *Supervisor) teamdState(ctx context.Context, id, lag string) (*teamd.State, error) {
	out, err := s.exec(ctx, id, []string{"teamdctl", lag, "state", "dump"})
	if err != nil {
		return nil, err
	}
	var st teamd.State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("teamdctl %s state dump: %w", lag, err)
	}
	return &st, nil
}

// lagState is one LAG's answer in a dumpAll.
type lagState struct {
	state *teamd.State
	err   error
}

// dumpAll asks every LAG's teamd in container id for its state in one exec
// of the container's teamd-shim (shim is its path there): "teamd-shim dump
// LAG...". An error means the command itself failed (an image whose shim
// has no dump); a LAG that did not answer has its own error.
func (s *Supervisor) dumpAll(ctx context.Context, id, shim string, lags []string) (map[string]lagState, error) {
	// Eight StateDumps at a time inside: the bound grows with the LAGs.
	out, err := s.execFor(ctx, id, append([]string{shim, "dump"}, lags...), execTimeout+time.Duration(len(lags))*100*time.Millisecond)
	if err != nil {
		return nil, err
	}
	var d proto.StateDumps
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("teamd-shim dump: %w", err)
	}
	all := map[string]lagState{}
	for _, lag := range lags {
		raw, ok := d.Dumps[lag]
		switch {
		case ok:
			var st teamd.State
			if err := json.Unmarshal(raw, &st); err != nil {
				all[lag] = lagState{err: fmt.Errorf("teamd-shim dump %s: %w", lag, err)}
			} else {
				all[lag] = lagState{state: &st}
			}
		case d.Errors[lag] != "":
			all[lag] = lagState{err: errors.New(d.Errors[lag])}
		default:
			all[lag] = lagState{err: fmt.Errorf("teamd-shim dump says nothing of %s", lag)}
		}
	}
	return all, nil
}
