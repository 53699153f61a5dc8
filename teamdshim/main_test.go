package teamdshim_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/test/testbin"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"golang.org/x/sys/unix"
)

// bins are the programs TestMain builds: the shim and the teamd stand-in.
var bins struct{ shim, teamdsim string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "teamdshim-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built, err := testbin.Build(dir, "cmd/teamd-shim", "integration/cmd/teamdsim")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.shim, bins.teamdsim = built["cmd/teamd-shim"], built["integration/cmd/teamdsim"]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's directories: records, teamd's run dir, dump files.
type env struct {
	dir, run, dump string
}

func newEnv(t *testing.T) env {
	t.Helper()
	return env{dir: filepath.Join(t.TempDir(), "records"), run: t.TempDir(), dump: t.TempDir()}
}

// vars is the environment a container would give its shims and teamd.
func (e env) vars(extra ...string) []string {
	return append(append(os.Environ(),
		"TEAMDWARM_DIR="+e.dir, "TEAMDWARM_RUN_DIR="+e.run, "TEAMDSIM_RUN_DIR="+e.run,
		"TEAMDWARM_TEAMD="+bins.teamdsim), extra...)
}

// config is a teamd config without ports: the stand-in then needs no
// interfaces, so these tests run without root.
func config(lag string) string {
	return fmt.Sprintf(`{"device":%q,"hwaddr":"02:54:44:00:00:09","runner":{"active":true,"name":"lacp","fast_rate":true}}`, lag)
}

// proc is a process a test started; it is killed at cleanup.
type proc struct {
	cmd  *exec.Cmd
	out  *testbin.Buffer
	done chan struct{}
}

func start(t *testing.T, vars []string, argv ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), out: &testbin.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = vars
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Its own process group: cleanup kills the shim and its teamd.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(argv[0]), p.out.String())
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// exit waits for the process to end and returns its exit code.
func (p *proc) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s still runs after %v:\n%s", p.cmd.Path, timeout, p.out.String())
		return -1
	}
}

// await waits for the record of kind k for lag that ok accepts.
func await(t *testing.T, dir, lag string, k proto.Kind, ok func(proto.Record) bool) proto.Record {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	events, err := statefile.Watch(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range events {
		if ev.LAG == lag && ev.Kind == k && ev.Record != nil && (ok == nil || ok(ev.Record)) {
			return ev.Record
		}
	}
	t.Fatalf("no %s record for %s in %s within 15s", k, lag, dir)
	return nil
}

func activeRecord(t *testing.T, dir, lag string, epoch uint64) *proto.Active {
	t.Helper()
	return await(t, dir, lag, proto.KindActive, func(r proto.Record) bool { return r.RecordEpoch() == epoch }).(*proto.Active)
}

// waitGone waits for a process that is not this test's child to exit, on
// a pidfd.
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0).Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue // a signal to the test process (the Go runtime's own)
		}
		if err != nil || n == 0 {
			t.Fatalf("pid %d still runs after %v (%v)", pid, timeout, err)
		}
		return
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// awaitOutput waits until the process has written want.
func awaitOutput(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after 5s:\n%s", want, p.out.String())
		}
		select {
		case <-p.done:
			if strings.Contains(p.out.String(), want) {
				return // written as it exited: its output is whole now
			}
			t.Fatalf("exited before writing %q:\n%s", want, p.out.String())
		case <-time.After(20 * time.Millisecond): // the output has no notification
		}
	}
}
