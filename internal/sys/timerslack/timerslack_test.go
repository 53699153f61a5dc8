package timerslack_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/timerslack"
)

// childSlack starts a process that prints its own slack under via(d),
// With or Apply.
func childSlack(t *testing.T, via func(time.Duration, func() error) error, d time.Duration) time.Duration {
	t.Helper()
	var out strings.Builder
	cmd := exec.Command("cat", "/proc/self/timerslack_ns")
	cmd.Stdout = &out
	if err := via(d, cmd.Start); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		t.Fatalf("child's timerslack_ns %q: %v", out.String(), err)
	}
	return time.Duration(ns)
}

// TestMain doubles as the child of TestEveryThreadOfAGoChild and TestExec:
// it prints the slack of threads its runtime made after it started (TestExec's
// executes itself with Exec first).
func TestMain(m *testing.M) {
	if v := os.Getenv("TIMERSLACK_EXEC"); v != "" {
		// TestExec's child: become the printing child, with slack v.
		ns, _ := strconv.ParseInt(v, 10, 64)
		env := []string{"TIMERSLACK_CHILD=1"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "TIMERSLACK_EXEC=") {
				env = append(env, kv)
			}
		}
		err := timerslack.Exec(time.Duration(ns), os.Args[0], os.Args, env)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if os.Getenv("TIMERSLACK_CHILD") == "" {
		os.Exit(m.Run())
	}
	const n = 4
	out := make(chan time.Duration, n)
	for range n {
		go func() {
			runtime.LockOSThread() // never unlocked: this thread is the goroutine's alone
			d, err := timerslack.Get()
			if err != nil {
				d = -1
			}
			out <- d
			select {} // keep the thread: the next goroutine gets a new one
		}()
	}
	for range n {
		fmt.Println((<-out).Nanoseconds())
	}
	os.Exit(0)
}

// A Go child's threads, made after it started, have the slack too: the
// runtime's sysmon, made first, among them.
func TestEveryThreadOfAGoChild(t *testing.T) {
	d := 2*time.Millisecond + 1
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "TIMERSLACK_CHILD=1")
	threadsHave(t, cmd, d, func() error { return timerslack.With(d, cmd.Start) })
}

// A process that executes itself with Exec runs on with the slack, every
// thread of it.
func TestExec(t *testing.T) {
	d := 3*time.Millisecond + 1
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "TIMERSLACK_EXEC="+strconv.FormatInt(d.Nanoseconds(), 10))
	threadsHave(t, cmd, d, cmd.Start)
}

// threadsHave starts cmd, a TestMain child, with start and checks that the
// threads it reports have slack d.
func threadsHave(t *testing.T, cmd *exec.Cmd, d time.Duration, start func() error) {
	t.Helper()
	var out, errs strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := start(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, errs.String())
	}
	lines := strings.Fields(out.String())
	if len(lines) != 4 {
		t.Fatalf("child printed %q", out.String())
	}
	for _, l := range lines {
		if l != strconv.FormatInt(d.Nanoseconds(), 10) {
			t.Errorf("a thread of the child has slack %s ns, want %d", l, d.Nanoseconds())
		}
	}
}

func TestChildInheritsTheSlack(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 50 * time.Microsecond, 3*time.Millisecond + 7} {
		if got := childSlack(t, timerslack.With, d); got != d {
			t.Errorf("With(%v): the child's slack is %v", d, got)
		}
	}
}

// The thread that started the child keeps its own slack: nothing else
// the program runs on it is delayed.
func TestTheThreadKeepsItsSlack(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := timerslack.Get()
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * time.Millisecond
	if before == want {
		want = 3 * time.Millisecond
	}
	if got := childSlack(t, timerslack.With, want); got != want {
		t.Fatalf("the child's slack is %v, want %v", got, want)
	}
	if after, _ := timerslack.Get(); after != before {
		t.Fatalf("the thread's slack is %v after With, %v before", after, before)
	}
}

func TestWithRefusesNonPositive(t *testing.T) {
	called := false
	for _, d := range []time.Duration{0, -time.Millisecond} {
		if err := timerslack.With(d, func() error { called = true; return nil }); err == nil {
			t.Errorf("With(%v) accepted", d)
		}
	}
	if called {
		t.Fatal("start ran with a refused slack")
	}
}

// start's error is With's.
func TestWithReturnsStartsError(t *testing.T) {
	if err := timerslack.With(time.Millisecond, func() error { return os.ErrNotExist }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v", err)
	}
}

// Apply is With for a positive slack; otherwise the child keeps the
// calling thread's.
func TestApply(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := timerslack.Get()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ d, want time.Duration }{
		{3 * time.Millisecond, 3 * time.Millisecond},
		{0, own},
		{-time.Millisecond, own},
	} {
		if got := childSlack(t, timerslack.Apply, tt.d); got != tt.want {
			t.Errorf("Apply(%v): the child's slack is %v, want %v", tt.d, got, tt.want)
		}
	}
}
