package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/procstat"
	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/internal/test/testbin"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// Teamd is a teamd build the lab runs.
type Teamd struct {
	Name    string // "debian", "sonic", "hld"
	Program string
	Ctl     string // its teamdctl
}

// ShimOpts say how to run one LAG's teamd under teamd-shim.
type ShimOpts struct {
	Records string   // the record directory
	Dump    string   // teamd's -L directory
	RunDir  string   // the shim's --run-dir; teamd's compiled-in /var/run/teamd if ""
	Args    []string // the shim's
	// TeamdArgs are added to teamd's command line (e.g. -g).
	TeamdArgs []string
	// MountNS runs the shim in a mount namespace of its own with a
	// private /run/teamd, as a container has: two teamd for one team
	// device each have their socket and pid file there.
	MountNS bool
}

// Proc is a process the lab started in its own process group, which Kill
// ends.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	Log  *testbin.Buffer
	done chan struct{}
	code int
}

// StartShim runs l's teamd td under teamd-shim in the DUT namespace, as a
// container's entrypoint would.
func (e *Env) StartShim(l LAG, td Teamd, o ShimOpts) (*Proc, error) {
	conf, err := e.Topo.TeamdConfig(l)
	if err != nil {
		return nil, err
	}
	if o.RunDir == "" {
		o.RunDir = "/var/run/teamd"
	}
	args := []string{"netns", "exec", DUT, e.Bin("teamd-shim"), "run", "--dir", o.Records, "--run-dir", o.RunDir}
	args = append(args, o.Args...)
	args = append(args, "--", td.Program, "-t", l.Name, "-f", conf)
	if o.Dump != "" {
		args = append(args, "-L", o.Dump)
	}
	args = append(args, o.TeamdArgs...)
	name := l.Name + " " + td.Name + " shim"
	if o.MountNS {
		// unshare and sh exec: the pid stays the shim's.
		return e.start(name, "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c",
			`mkdir -p /run/teamd && mount -t tmpfs -o mode=755 tmpfs /run/teamd && exec "$0" "$@"`, "ip"}, args...)...)
	}
	return e.start(name, "ip", args...)
}

// TeamdPIDIn reads teamd's pid file in the mount namespace of process
// pid (a shim started with MountNS).
func TeamdPIDIn(ctx context.Context, pid int, lag string) (int, error) {
	out, err := output(ctx, "nsenter", "--mount", fmt.Sprintf("--target=%d", pid), "cat", filepath.Join("/run/teamd", lag+".pid"))
	if err != nil {
		return 0, err
	}
	var n int
	_, err = fmt.Sscan(strings.TrimSpace(out), &n)
	return n, err
}

func (e *Env) start(name, prog string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, cmd: exec.Command(prog, args...), Log: &testbin.Buffer{}, done: make(chan struct{}), code: -1}
	p.cmd.Stdout, p.cmd.Stderr = p.Log, p.Log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = p.cmd.Wait()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			p.code = signame.ExitCode(ws)
		}
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	return p, nil
}

// Pid is the process's pid (ip netns exec execs: the shim's own).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig unless the process has exited.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("%s has exited", p.Name)
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits for the process to exit and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.code, nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still runs after %v", p.Name, timeout)
	}
}

// Running reports whether the process still runs.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill ends the process's group.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// AwaitLog waits until the process's output holds want.
func (p *Proc) AwaitLog(ctx context.Context, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Log.String(), want) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not log %q within %v", p.Name, want, timeout)
		}
		select {
		case <-p.done:
			if !strings.Contains(p.Log.String(), want) {
				return fmt.Errorf("%s exited (code %d) before it logged %q", p.Name, p.code, want)
			}
		case <-time.After(20 * time.Millisecond): // its output has no notification
		}
	}
	return nil
}

// AwaitRecord waits for the record of kind k of lag in dir that ok
// accepts (nil: any).
func AwaitRecord(ctx context.Context, dir, lag string, k proto.Kind, timeout time.Duration, ok func(proto.Record) bool) (proto.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	events, err := statefile.WatchOnly(ctx, dir, func(l string, kind proto.Kind) bool { return l == lag && kind == k })
	if err != nil {
		return nil, err
	}
	for ev := range events {
		if ev.Record != nil && (ok == nil || ok(ev.Record)) {
			return ev.Record, nil
		}
	}
	return nil, fmt.Errorf("no %s record of %s within %v", k, lag, timeout)
}

// TeamdPID reads teamd's pid file in its compiled-in run directory.
func TeamdPID(lag string) (int, error) {
	b, err := os.ReadFile(filepath.Join("/var/run/teamd", lag+".pid"))
	if err != nil {
		return 0, err
	}
	var pid int
	_, err = fmt.Sscan(strings.TrimSpace(string(b)), &pid)
	return pid, err
}

// Alive reports whether process pid runs (a zombie has stopped running).
func Alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid <= 0 {
		return false
	}
	f, err := procstat.Fields(st)
	return err != nil || f[0] != "Z" // a line it cannot parse is no proof of an exit
}

// AwaitGone waits until process pid, not the lab's child, has stopped
// running, and says when. No event tells of a stranger's exit, so it polls.
func AwaitGone(ctx context.Context, pid int, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for Alive(pid) {
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("still runs after %v", timeout)
		case <-tick.C:
		}
	}
	return time.Now(), nil
}
