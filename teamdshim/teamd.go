package teamdshim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/internal/sys/timerslack"
	"github.com/teamdwarm/teamdwarm/teamd"
	"golang.org/x/sys/unix"
)

// teamdProc is the shim's teamd: its child, or an orphan it adopted (the
// teamd of a shim of this container that died; its container's init reaps
// it). Only the goroutine started by startTeamd or adoptTeamd waits for
// it; everything else learns of its exit from done.
type teamdProc struct {
	cmd     *exec.Cmd // nil if adopted
	pidfd   int       // adopted: the process's pidfd, for signals and its exit
	pidv    int
	client  *teamd.Client
	done    chan struct{} // closed once the process exited and state is set
	state   *os.ProcessState
	adopted bool
}

// envTeamdSlack carries the timer slack init was given to its shims, in
// nanoseconds: they run with more (InitOptions.ShimTimerSlack), and teamd
// is started with this.
const envTeamdSlack = "TEAMDWARM_TEAMD_TIMER_SLACK"

// TeamdTimerSlackFromInit is the timer slack this process's init asks
// teamd to be started with (Options.TeamdTimerSlack), 0 if none; once:
// teamd does not inherit it.
func TeamdTimerSlackFromInit() time.Duration {
	d := envSlack()
	os.Unsetenv(envTeamdSlack)
	return d
}

// TeamdGODEBUGFromInit takes out of this process's GODEBUG what init added
// for its shims (shimGODEBUG), so that teamd, which inherits it, gets the
// GODEBUG init was given: the wrapped daemon is not ours to tune. The
// shim's runtime read the setting at its start and keeps it.
func TeamdGODEBUGFromInit() {
	if os.Getenv(envGODEBUGAdded) == "" {
		return
	}
	os.Unsetenv(envGODEBUGAdded)
	switch v := os.Getenv("GODEBUG"); {
	case v == shimGODEBUG:
		os.Unsetenv("GODEBUG")
	case strings.HasSuffix(v, ","+shimGODEBUG):
		os.Setenv("GODEBUG", strings.TrimSuffix(v, ","+shimGODEBUG))
	}
}

// envSlack is the timer slack envTeamdSlack says, 0 if none.
func envSlack() time.Duration {
	ns, err := strconv.ParseInt(os.Getenv(envTeamdSlack), 10, 64)
	if err != nil || ns <= 0 {
		return 0
	}
	return time.Duration(ns)
}

// setEnvSlack sets envTeamdSlack to d.
func setEnvSlack(d time.Duration) {
	os.Setenv(envTeamdSlack, strconv.FormatInt(d.Nanoseconds(), 10))
}

// startTeamd starts teamd, with timer slack slack if it is not 0.
func startTeamd(argv []string, socket string, slack time.Duration) (*teamdProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := timerslack.Apply(slack, cmd.Start); err != nil {
		return nil, fmt.Errorf("start teamd: %w", err)
	}
	t := &teamdProc{cmd: cmd, pidv: cmd.Process.Pid, pidfd: -1, client: teamd.NewClient(socket), done: make(chan struct{})}
	go func() {
		// Only this goroutine reaps teamd, so its pid names it until then.
		if fd, err := unix.PidfdOpen(t.pidv, unix.PIDFD_NONBLOCK); err == nil {
			_ = awaitExit(fd) // on failure, Wait blocks instead
			unix.Close(fd)
		}
		_ = cmd.Wait() // the exit status is in ProcessState
		t.state = cmd.ProcessState
		close(t.done)
	}()
	return t, nil
}

// awaitExit returns once the process pidfd refers to has exited. It waits
// in the runtime's poller, not in a blocking system call, so that no OS
// thread of the shim is held for teamd's life: each thread is one more
// task for the shim's exit to tear down and its reaper to release. It
// fails, having waited for nothing, where pidfds cannot be polled.
func awaitExit(pidfd int) error {
	dup, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pidfd: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return fmt.Errorf("pidfd: %w", err)
	}
	f := os.NewFile(uintptr(dup), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd: %w", err)
	}
	// A pidfd turns readable, and stays so, when its process exits.
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			pollErr = err
			return true
		}
		return n > 0
	})
	if err == nil && pollErr != nil {
		err = fmt.Errorf("pidfd: %w", pollErr)
	}
	return err
}

// orphanTeamd finds the teamd of lag that the pid file in runDir names, if
// it still runs and is not this process's child: the teamd of a shim that
// died. A pid file that names anything else is stale, and is removed so
// that it cannot stop teamd from starting (libdaemon refuses to start
// while the pid it names runs, and in a container pids are soon reused).
func orphanTeamd(runDir, lag string) (pid int, err error) {
	path := filepath.Join(runDir, lag+".pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	if pid > 0 && isTeamdOf(pid, lag) {
		return pid, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("stale teamd pid file %s (pid %d is no teamd of %s): %w", path, pid, lag, err)
	}
	return 0, nil
}

// isTeamdOf reports whether process pid runs teamd for team device lag.
func isTeamdOf(pid int, lag string) bool { return teamdFor(pid) == lag }

// teamdFor is the team device process pid runs teamd for (its -t), "" if
// it runs no teamd. A shim installed as /usr/bin/teamd has teamd's command
// line too: its program (/proc/PID/exe) is this one.
func teamdFor(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		if self, err := os.Executable(); err == nil && exe == self {
			return ""
		}
	}
	argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if len(argv) < 2 || !strings.Contains(filepath.Base(argv[0]), "teamd") {
		return ""
	}
	a, err := teamd.ParseArgs(argv[1:])
	if err != nil {
		return ""
	}
	lag, _ := a.Value("t")
	return lag
}

// adoptTeamd takes over an orphaned teamd: signals go through its pidfd
// (no pid reuse can misdirect them), and its exit is seen when the pidfd
// becomes readable. Its exit status is its reaper's, not the shim's.
func adoptTeamd(pid int, socket string) (*teamdProc, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt teamd (pid %d): %w", pid, err)
	}
	t := &teamdProc{pidfd: fd, pidv: pid, client: teamd.NewClient(socket), done: make(chan struct{}), adopted: true}
	go func() {
		if awaitExit(fd) == nil {
			close(t.done)
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		close(t.done)
	}()
	return t, nil
}

func (t *teamdProc) pid() int { return t.pidv }

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
	var err error
	if t.adopted {
		err = unix.PidfdSendSignal(t.pidfd, sig, nil, 0)
		if errors.Is(err, unix.ESRCH) {
			err = os.ErrProcessDone
		}
	} else {
		err = t.cmd.Process.Signal(sig)
	}
	if err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return errExited
		}
		return fmt.Errorf("signal teamd (pid %d): %w", t.pid(), err)
	}
	return nil
}

var errExited = errors.New("teamd has exited")

// exitCode is teamd's exit status as a shell reports it: 128+n when killed
// by signal n; 0 for an adopted teamd, whose status only its reaper knows.
func (t *teamdProc) exitCode() int {
	if t.adopted {
		return 0
	}
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
	switch {
	case t.adopted && t.exited():
		return "exited (an adopted teamd: its status is its reaper's)"
	case t.state == nil:
		return "running"
	}
	return t.state.String()
}

// close releases an adopted teamd's pidfd once it has exited.
func (t *teamdProc) close() {
	if t != nil && t.adopted && t.exited() && t.pidfd >= 0 {
		unix.Close(t.pidfd)
		t.pidfd = -1
	}
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
