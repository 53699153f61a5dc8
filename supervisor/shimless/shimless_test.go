package shimless

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       uint64
		err        bool
	}{
		{name: "teamd", stat: "4242 (teamd) S 1 4242 4242 0 -1 4194624 100 0 0 0 1 2 0 0 20 0 1 0 987654 10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0", want: 987654},
		{name: "a name with spaces and parentheses", stat: "7 (a) b (c) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0", want: 55},
		{name: "no name", stat: "7 a S 1", err: true},
		{name: "short", stat: "7 (teamd) S 1 7", err: true},
		{name: "not a number", stat: "7 (teamd) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0 0", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, got, err := parseStat([]byte(tc.stat))
			if (err != nil) != tc.err || got != tc.want || (err == nil && state != 'S') {
				t.Errorf("parseStat = %c, %d, %v; want S, %d, error %v", state, got, err, tc.want, tc.err)
			}
		})
	}
}

// The container's absolute symlinks (Debian's /var/run -> /run) resolve
// inside its root, not on the host.
func TestRootResolvesSymlinksInside(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"run/teamd", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/run", filepath.Join(root, "var/run")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "run/teamd/PortChannel1.pid"), []byte("42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRootDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := r.File("/var/run/teamd/PortChannel1.pid")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f)
	if err != nil || string(b) != "42\n" {
		t.Fatalf("read %q, %v: want the container's pid file", b, err)
	}
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := r.Path("/var/run/../../../etc"); err != nil {
		t.Errorf("a path climbing out of the root: %v", err)
	} else if _, err := os.Stat(filepath.Join(d, "marker")); err != nil {
		t.Errorf("a path climbing out of the root left it: %v", err)
	}
	if _, err := r.File("/no/such/dir/x"); err == nil {
		t.Error("a missing directory was found")
	}
}

// startChild starts a shell that runs script, for Stop to stop, and
// returns once the script has said "ready" (its traps are set).
func startChild(t *testing.T, script string) *Teamd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the child said %q, %v", line, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // its parent reaps it
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	_, st, err := procStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return &Teamd{LAG: "PortChannel1", PID: cmd.Process.Pid, Start: st}
}

func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         string
	}{
		{name: "exits on SIGUSR1", script: "echo ready; exec sleep 30", want: "exited"},
		{name: "ignores SIGUSR1", script: "trap '' USR1; echo ready; while :; do sleep 0.05; done", want: "killed after 200ms: did not exit on SIGUSR1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := startChild(t, tc.script)
			p, err := td.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			how, gone := p.Stop(context.Background(), syscall.SIGUSR1, 200*time.Millisecond)
			if !gone || !strings.HasPrefix(how, tc.want) {
				t.Errorf("Stop: %q, gone %v; want %q, gone", how, gone, tc.want)
			}
			if td.Alive() {
				t.Error("the process lives on")
			}
			if _, err := td.Open(); err == nil {
				t.Error("a process that exited was opened again")
			}
		})
	}
}

// A PID whose start time is not the one found is another process (the
// teamd exited and its PID was reused): it is not signalled.
func TestOpenRefusesAnotherProcess(t *testing.T) {
	td := startChild(t, "echo ready; exec sleep 30")
	td.Start++
	if p, err := td.Open(); err == nil {
		p.Close()
		t.Fatal("opened a process whose start time differs")
	}
}

// The container controls its processes' names, which /proc/<pid>/stat
// holds: a bad one must not panic or mislead the parser.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (teamd) S 1 4242 4242 0 -1 4194624 100 0 0 0 1 2 0 0 20 0 1 0 987654 10000000"))
	f.Add([]byte("7 (a) b) S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = parseStat(b)
	})
}
