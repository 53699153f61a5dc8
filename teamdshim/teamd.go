package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// teamdProc is the teamd child. Only the goroutine started by startTeamd
// waits for it; everything else learns of its exit from done.
type teamdProc struct {
	cmd    *exec.Cmd
	client *teamd.Client
	done   chan struct{} // closed once the process exited and state is set
	state  *os.ProcessState
}

func startTeamd(argv []string, socket string) (*teamdProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start teamd: %w", err)
	}
	t := &teamdProc{cmd: cmd, client: teamd.NewClient(socket), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status is in ProcessState
		t.state = cmd.ProcessState
		close(t.done)
	}()
	return t, nil
}

func (t *teamdProc) pid() int { return t.cmd.Process.Pid }

func (t *teamdProc) exited() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless teamd has exited (its pid may be reused).
func (t *teamdProc) signal(sig syscall.Signal) error {
	if t.exited() {
		return errExited
	}
	if err := t.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return errExited
		}
		return fmt.Errorf("signal teamd (pid %d): %w", t.pid(), err)
	}
	return nil
}

var errExited = errors.New("teamd has exited")

// exitCode is teamd's exit status as a shell reports it: 128+n when killed
// by signal n.
func (t *teamdProc) exitCode() int {
	if t.state == nil {
		return -1
	}
	if ws, ok := t.state.Sys().(syscall.WaitStatus); ok {
		return signame.ExitCode(ws)
	}
	return t.state.ExitCode()
}

// describe says how teamd ended, for records and logs.
func (t *teamdProc) describe() string {
	if t.state == nil {
		return "running"
	}
	return t.state.String()
}

// killWait bounds the wait for teamd's end after SIGKILL. A process stuck
// in the kernel (uninterruptible sleep) dies only when it leaves it, but
// with SIGKILL pending it never runs its own code again: it sends nothing
// more.
const killWait = 2 * time.Second

// stop waits up to timeout for teamd to exit, then kills it. It returns
// how teamd ended.
func (t *teamdProc) stop(timeout time.Duration, why string) string {
	select {
	case <-t.done:
		return t.describe()
	case <-time.After(timeout):
	}
	_ = t.signal(syscall.SIGKILL)
	select {
	case <-t.done:
		return fmt.Sprintf("killed after %v: %s", timeout, why)
	case <-time.After(killWait):
		return fmt.Sprintf("killed after %v: %s; still not reaped %v after SIGKILL", timeout, why, killWait)
	}
}

// stateDump asks teamd for its state, bounded by timeout.
func (t *teamdProc) stateDump(ctx context.Context, timeout time.Duration) (*teamd.State, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return t.client.StateDump(ctx)
}
