package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/internal/test/testbin"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// bins holds the binaries TestMain builds for the tests.
var bins struct{ teamdsim, shim, warm, pause, teammgrd, demo string }

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() == 0 {
		testbed.Sweep(os.Getpid(), false) // leftovers of killed runs
		sweepDocker()
		// An interrupted run still removes what it made.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sigs
			testbed.Sweep(os.Getpid(), true)
			os.Exit(1)
		}()
	}
	dir, err := os.MkdirTemp("", "teamdwarm-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built, err := testbin.Build(dir, "cmd/teamd-shim", "integration/cmd/teamdsim", "cmd/teamd-warm", "integration/cmd/pause", "integration/cmd/teammgrd",
		"integration/cmd/teamdwarm-demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.shim, bins.teamdsim = built["cmd/teamd-shim"], built["integration/cmd/teamdsim"]
	bins.warm, bins.pause = built["cmd/teamd-warm"], built["integration/cmd/pause"]
	bins.teammgrd, bins.demo = built["integration/cmd/teammgrd"], built["integration/cmd/teamdwarm-demo"]
	code := m.Run()
	os.RemoveAll(dir)
	if os.Geteuid() == 0 {
		testbed.Sweep(os.Getpid(), true)
	}
	os.Exit(code)
}

// needBed skips a test that needs root and Open vSwitch.
func needBed(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI needs Open vSwitch for the real-peer tests: make deps installs it")
		}
		t.Skip("needs Open vSwitch (make deps installs it)")
	}
}

func newBed(t testing.TB, lags, members int) *testbed.Bed {
	t.Helper()
	needBed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := testbed.New(ctx, testbed.Topology{LAGs: lags, Members: members}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	return b
}

// sim is one stand-in process in the DUT namespace, started by the test.
type sim struct {
	cmd    *exec.Cmd
	runDir string
	log    *testbin.Buffer
	done   chan struct{}
	lag    testbed.LAG
}

type simOpts struct {
	passive  bool   // -P: passive until the takeover signal
	takeover string // --takeover-signal
	dumpDir  string
	runDir   string
}

func startSim(t testing.TB, b *testbed.Bed, l testbed.LAG, o simOpts) *sim {
	t.Helper()
	if o.runDir == "" {
		o.runDir = t.TempDir()
	}
	args := []string{"netns", "exec", b.DUT, bins.teamdsim, "-t", l.Name, "-c", l.TeamdConfig(true), "--run-dir=" + o.runDir}
	if o.dumpDir != "" {
		args = append(args, "-L", o.dumpDir)
	}
	if o.passive {
		args = append(args, "-P")
	}
	if o.takeover != "" {
		args = append(args, "--takeover-signal="+o.takeover)
	}
	s := &sim{runDir: o.runDir, log: &testbin.Buffer{}, done: make(chan struct{}), lag: l}
	s.launch(t, exec.Command("ip", args...), "stand-in")
	return s
}

// launch starts cmd as s, in its own process group, which cleanup kills
// (the stand-in, or a shim and its teamd). ip netns exec execs, so the pid
// is the program's.
func (s *sim) launch(t testing.TB, cmd *exec.Cmd, what string) {
	t.Helper()
	s.cmd = cmd
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		if t.Failed() {
			t.Logf("%s %s (pid %d) log:\n%s", s.lag.Name, what, s.cmd.Process.Pid, s.log.String())
		}
	})
}

func (s *sim) signal(sig syscall.Signal) {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(sig)
	}
}

func (s *sim) client() *teamd.Client {
	return teamd.NewClient(teamd.SocketPath(s.runDir, s.lag.Name))
}

// waitExit waits for the stand-in to exit, up to timeout.
func (s *sim) waitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("%s stand-in did not exit within %v", s.lag.Name, timeout)
	}
}

// waitState polls the stand-in's StateDump until ok accepts it.
func (s *sim) waitState(t testing.TB, timeout time.Duration, ok func(*teamd.State) bool) *teamd.State {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.client().StateDump(ctx)
		cancel()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state not reached within %v (last: %v, err %v)", s.lag.Name, timeout, st, err)
		}
		select {
		case <-s.done:
			t.Fatalf("%s stand-in exited:\n%s", s.lag.Name, s.log.String())
		case <-time.After(50 * time.Millisecond): // StateDump has no change notification
		}
	}
}

// allCurrent: every member hears the partner.
func allCurrent(st *teamd.State) bool {
	for _, p := range st.Ports {
		if p.Runner.State != "current" {
			return false
		}
	}
	return len(st.Ports) > 0
}
