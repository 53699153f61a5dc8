package teamdshim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamdshim"
)

// The shim installed as /usr/bin/teamd (a symlink) runs teammgrd's exact
// command line: -d returns once teamd answers, teamd runs under a
// daemonized shim, and that shim hands over on SIGUSR1.
func TestInstalledAsTeamdUnderTeammgrd(t *testing.T) {
	e := newEnv(t)
	teamdLink := filepath.Join(t.TempDir(), "teamd")
	if err := os.Symlink(bins.shim, teamdLink); err != nil {
		t.Fatal(err)
	}
	// sonic-swss cfgmgr/teammgr.cpp, cold start.
	cmd := exec.Command(teamdLink, "-r", "-t", "PortChannel7", "-c", config("PortChannel7"), "-L", e.dump, "-g", "-d")
	cmd.Env = e.vars()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("teamd -d: %v\n%s", err, out)
	}
	shimPID := readPID(t, teamdshim.PIDFile(e.run, "PortChannel7"))
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel7.pid"))
	t.Cleanup(func() { // neither is this test's child
		_ = syscall.Kill(shimPID, syscall.SIGKILL)
		_ = syscall.Kill(teamdPID, syscall.SIGKILL)
	})
	// teamd -d returned: its control socket answers at once (teammgrd
	// adds the ports with teamdctl next).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := teamd.NewClient(teamd.SocketPath(e.run, "PortChannel7")).StateDump(ctx); err != nil {
		t.Fatalf("teamd does not answer after teamd -d returned: %v", err)
	}
	activeRecord(t, e.dir, "PortChannel7", 1)
	if err := syscall.Kill(shimPID, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	await(t, e.dir, "PortChannel7", proto.KindSnapshot, nil)
	waitGone(t, shimPID, 5*time.Second)
	if log, _ := os.ReadFile(filepath.Join(e.run, "PortChannel7.shim.log")); !strings.Contains(string(log), "snapshot written") {
		t.Errorf("the daemon's log does not tell of the handoff:\n%s", log)
	}
}

// teamd -d fails the way teamd does: non-zero, with the reason on stderr.
func TestInstalledAsTeamdReportsFailure(t *testing.T) {
	e := newEnv(t)
	teamdLink := filepath.Join(t.TempDir(), "teamd")
	if err := os.Symlink(bins.shim, teamdLink); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(teamdLink, "-r", "-t", "PortChannel7", "-c", `{"device":`, "-d")
	cmd.Env = e.vars()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "teamd config") {
		t.Fatalf("teamd -d with a broken config: err %v, output %q", err, out)
	}
}

func writeConfigs(t *testing.T, configs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, c := range configs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// init runs a shim per LAG, forwards SIGUSR1 to all, and exits 0 once
// every LAG is handed over. At start it removes the temp files that a
// killed writer left in the record directory, but not one being written.
func TestInitHandsOverEveryLAG(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(statefile.WritingDir(e.dir), 0o700); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(statefile.WritingDir(e.dir), ".PortChannel1.active.tmp-0123456789ab")
	fresh := filepath.Join(e.dir, ".PortChannel2.snapshot.tmp-0123456789ab")
	for _, p := range []string{left, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(left, old, old); err != nil {
		t.Fatal(err)
	}
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1"), "PortChannel2.json": config("PortChannel2"), "README": "not a config"})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs, "--", "-L", e.dump)
	for _, lag := range []string{"PortChannel1", "PortChannel2"} {
		activeRecord(t, e.dir, lag, 1)
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the hour-old temp file is still there (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("the fresh temp file: %v", err)
	}
	p.signal(t, syscall.SIGUSR1)
	if code := p.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("init: exit %d, want 0", code)
	}
	for _, lag := range []string{"PortChannel1", "PortChannel2"} {
		if _, err := os.Stat(filepath.Join(e.dir, lag+".snapshot")); err != nil {
			t.Errorf("%s: %v", lag, err)
		}
	}
}

// init runs, and starts its shims, with the timer slack it is told and
// without asynchronous preemption (GODEBUG), and their teamd with the slack
// init was given: the wrapped daemon is not ours to tune.
func TestInitGivesTheShimsTheirTimerSlack(t *testing.T) {
	e := newEnv(t)
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1")})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs, "--timer-slack", "3ms", "--", "-L", e.dump)
	activeRecord(t, e.dir, "PortChannel1", 1)
	slack := func(path string) int64 {
		t.Helper()
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrPermission) {
			t.Skip("reading another process's timer slack needs CAP_SYS_NICE")
		}
		if err != nil {
			t.Fatal(err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return ns
	}
	// /proc shows a process's main thread's; its other threads, the
	// runtime's among them, inherit it (timerslack's tests).
	shim := readPID(t, teamdshim.PIDFile(e.run, "PortChannel1"))
	if ns := slack(fmt.Sprintf("/proc/%d/timerslack_ns", shim)); ns != int64(3*time.Millisecond) {
		t.Errorf("the shim's timer slack is %d ns, want 3ms", ns)
	}
	// init executed itself again to run with it too.
	if ns := slack(fmt.Sprintf("/proc/%d/timerslack_ns", p.cmd.Process.Pid)); ns != int64(3*time.Millisecond) {
		t.Errorf("init's timer slack is %d ns, want 3ms", ns)
	}
	for who, pid := range map[string]int{"init": p.cmd.Process.Pid, "the shim": shim} {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Split(string(env), "\x00"), "GODEBUG=asyncpreemptoff=1") {
			t.Errorf("%s runs without GODEBUG=asyncpreemptoff=1", who)
		}
	}
	given := slack("/proc/self/timerslack_ns") // init was started from a thread of this process
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel1.pid"))
	if got := slack(fmt.Sprintf("/proc/%d/timerslack_ns", teamdPID)); got != given {
		t.Errorf("teamd's timer slack is %d ns, want the %d ns init was given", got, given)
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", teamdPID)); err == nil {
		for _, word := range []string{"TEAMDWARM_TEAMD_TIMER_SLACK", "asyncpreemptoff", "TEAMDWARM_GODEBUG_ADDED"} {
			if strings.Contains(string(env), word) {
				t.Errorf("teamd inherited %s, the shims' alone", word)
			}
		}
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("init: exit %d, want 0:\n%s", code, p.out.String())
	}
}

// A LAG whose teamd cannot start does not stop the others, and init's exit
// code says a LAG failed.
func TestInitReportsAFailedLAG(t *testing.T) {
	e := newEnv(t)
	bad := `{"device":"PortChannel3","runner":{"name":"lacp"},"ports":{"nosuch0":{}}}`
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1"), "PortChannel3.conf": bad})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs)
	activeRecord(t, e.dir, "PortChannel1", 1)
	p.signal(t, syscall.SIGTERM)
	if code := p.exit(t, 10*time.Second); code != 1 {
		t.Fatalf("init: exit %d, want 1", code)
	}
	if out := p.out.String(); !strings.Contains(out, "1 of 2 LAGs failed: PortChannel3") {
		t.Errorf("init does not name the failed LAG:\n%s", out)
	}
}

func TestInitWithoutConfigs(t *testing.T) {
	e := newEnv(t)
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", t.TempDir())
	if code := p.exit(t, 5*time.Second); code != 1 || !strings.Contains(p.out.String(), "no *.conf or *.json") {
		t.Fatalf("exit %d, output %q", code, p.out.String())
	}
}

// Children orphaned inside the container come to init, which reaps them:
// no zombie is left behind.
func TestInitReapsOrphans(t *testing.T) {
	e := newEnv(t)
	pidFile := filepath.Join(t.TempDir(), "orphan.pid")
	// A teamd that leaves an orphan behind: its subshell exits at once,
	// and the sleep is reparented to init (a subreaper here, PID 1 in a
	// container).
	teamd := filepath.Join(t.TempDir(), "teamd")
	script := "#!/bin/sh\n(sleep 0.3 & echo $! > " + pidFile + ")\nexec " + bins.teamdsim + ` "$@"` + "\n"
	if err := os.WriteFile(teamd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1")})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs, "--teamd", teamd)
	activeRecord(t, e.dir, "PortChannel1", 1)
	orphan := readPID(t, pidFile)
	// Its parent is init: only init can reap it, so if it goes away, init did.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan)); err == nil {
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if want := fmt.Sprint(p.cmd.Process.Pid); len(fields) < 2 || fields[1] != want {
			t.Fatalf("orphan's parent: %v, want init %s", fields[1:2], want)
		}
	}
	waitGone(t, orphan, 5*time.Second) // it has exited; now it must not stay a zombie
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
		if err != nil {
			break // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d not reaped: %s", orphan, stat)
		}
		time.Sleep(10 * time.Millisecond) // reaping has no event a non-parent can wait on
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exit(t, 5*time.Second); code != 0 {
		t.Fatalf("init: exit %d", code)
	}
}

// Installed as teamdctl, the shim answers what teamd-warm asks in a
// container: "teamdctl <lag> state dump", teamd's StateDump JSON as is.
// Anything else is a usage error, never a silent success.
func TestInstalledAsTeamdctl(t *testing.T) {
	e := newEnv(t)
	runShim(t, e, "PortChannel7", nil)
	activeRecord(t, e.dir, "PortChannel7", 1)
	teamdctlBin := filepath.Join(t.TempDir(), "teamdctl")
	if err := os.Symlink(bins.shim, teamdctlBin); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"PortChannel7", "state", "dump"}, 0},
		{[]string{"-o", "PortChannel7", "state"}, 0},
		{[]string{"--oneline", "PortChannel7", "state", "dump"}, 0},
		{[]string{"-D", "PortChannel7", "state", "dump"}, 2}, // D-Bus: not here
		{[]string{"PortChannel7", "port", "add", "Ethernet0"}, 2},
		{[]string{"PortChannel8", "state", "dump"}, 1}, // no such teamd
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := exec.Command(teamdctlBin, tc.args...)
			cmd.Env = e.vars()
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if tc.code != 0 {
				if stderr.Len() == 0 {
					t.Error("failed without saying why")
				}
				return
			}
			// -o is libteam's --oneline: one line; without it teamd's own
			// indented JSON.
			if lines := strings.Count(strings.TrimSpace(stdout.String()), "\n") + 1; (tc.args[0] == "-o" || tc.args[0] == "--oneline") != (lines == 1) {
				t.Errorf("%d lines of output for %q", lines, tc.args)
			}
			var st teamd.State
			if err := json.Unmarshal([]byte(stdout.String()), &st); err != nil {
				t.Fatalf("state dump is not teamd's JSON: %v\n%s", err, stdout.String())
			}
			if st.TeamDevice.IfInfo.Ifname != "PortChannel7" || !st.Runner.FastRate {
				t.Errorf("state dump of %q, fast rate %v: want PortChannel7's, fast", st.TeamDevice.IfInfo.Ifname, st.Runner.FastRate)
			}
		})
	}
}

// A shim killed under init is restarted at once; its teamd, which runs on,
// is adopted (no second teamd, no stale pid file in the way), and the
// restarted shim hands the LAG over on SIGUSR1 as the first would have.
func TestInitRestartsAKilledShimWhichAdoptsItsTeamd(t *testing.T) {
	e := newEnv(t)
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1")})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs, "--", "-L", e.dump)
	first := activeRecord(t, e.dir, "PortChannel1", 1)
	shim := readPID(t, teamdshim.PIDFile(e.run, "PortChannel1"))
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel1.pid"))
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitOutput(t, p, "shim died; restarting it")
	awaitOutput(t, p, "adopted the running teamd of a shim that died")
	a := await(t, e.dir, "PortChannel1", proto.KindActive, func(r proto.Record) bool {
		return r.(*proto.Active).Path == proto.PathRestart && r.(*proto.Active).SinceMono > first.SinceMono
	}).(*proto.Active)
	if a.Epoch != 1 {
		t.Errorf("restarted at epoch %d, want 1", a.Epoch)
	}
	if now := readPID(t, filepath.Join(e.run, "PortChannel1.pid")); now != teamdPID {
		t.Errorf("teamd pid %d after the restart, want the adopted %d", now, teamdPID)
	}
	p.signal(t, syscall.SIGUSR1)
	if code := p.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("init: exit %d, want 0:\n%s", code, p.out.String())
	}
	if _, err := os.Stat(filepath.Join(e.dir, "PortChannel1.snapshot")); err != nil {
		t.Errorf("no snapshot from the restarted shim: %v", err)
	}
	waitGone(t, teamdPID, 5*time.Second)
}

// A teamd killed under its shim ends the shim with 137; init restarts it,
// and the restarted shim starts a teamd of its own (the stale pid file
// does not stop it).
func TestInitRestartsAfterTeamdWasKilled(t *testing.T) {
	e := newEnv(t)
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1")})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs, "--", "-L", e.dump)
	first := activeRecord(t, e.dir, "PortChannel1", 1)
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel1.pid"))
	if err := syscall.Kill(teamdPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	await(t, e.dir, "PortChannel1", proto.KindActive, func(r proto.Record) bool {
		return r.(*proto.Active).Path == proto.PathRestart && r.(*proto.Active).SinceMono > first.SinceMono
	})
	if now := readPID(t, filepath.Join(e.run, "PortChannel1.pid")); now == teamdPID {
		t.Errorf("teamd's pid file still names the killed %d", teamdPID)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exit(t, 10*time.Second); code != 0 {
		t.Fatalf("init: exit %d, want 0 (the LAG was restarted):\n%s", code, p.out.String())
	}
}

// A shim that dies just as init forwards SIGUSR1 (init still counts it
// as running) leaves its teamd unsignalled: init, reaping it, passes the
// signal on to the orphaned teamd, which stops warm. Init is frozen while
// both happen, so that it sees them together, in either order. If it sees
// the exit first, it restarts the shim and forwards the signal to it in the
// same millisecond, before the new shim listens: the signal goes again
// after listenGrace (without that, a few runs in a hundred failed).
func TestInitForwardsToTheTeamdOfAShimThatDiedAsItForwarded(t *testing.T) {
	e := newEnv(t)
	confs := writeConfigs(t, map[string]string{"PortChannel1.conf": config("PortChannel1")})
	p := start(t, e.vars(), bins.shim, "init", "--config-dir", confs, "--", "-L", e.dump)
	activeRecord(t, e.dir, "PortChannel1", 1)
	shim := readPID(t, teamdshim.PIDFile(e.run, "PortChannel1"))
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel1.pid"))
	p.signal(t, syscall.SIGSTOP)
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitZombie(t, shim)
	p.signal(t, syscall.SIGUSR1)
	p.signal(t, syscall.SIGCONT)
	// Whichever init saw first, teamd gets SIGUSR1: from init (the shim
	// was dead) or from the restarted shim that adopted it.
	waitGone(t, teamdPID, 10*time.Second)
	// Its last words may still be in the pipe.
	awaitOutput(t, p, "warm stop (SIGUSR1)")
	p.exit(t, 10*time.Second)
}

// waitZombie waits until pid has exited (and not been reaped yet).
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return // reaped already
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return
		}
		time.Sleep(5 * time.Millisecond) // a process's end has no notification a test can wait on here
	}
	t.Fatalf("pid %d did not exit", pid)
}
