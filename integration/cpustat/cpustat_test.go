package cpustat

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       time.Duration
		err        string
	}{
		{"plain", "42 (ovs-vswitchd) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 100 0 0", 2800 * time.Millisecond, ""},
		{"name with spaces and parens", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", 30 * time.Millisecond, ""},
		{"short", "7 (x) R 1 7", 0, "fields after the name"},
		{"no name", "7 x R 1", 0, "no command name"},
		{"not a count", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 2 0", 0, "are not counts"},
		{"ten billion ticks", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 10000000000 0 0", 10000000000 * 10 * time.Millisecond, ""},
		{"the most a Duration holds", fmt.Sprintf("7 (x) R 1 7 7 0 -1 0 0 0 0 0 %d 0 0", maxTicks), time.Duration(maxTicks) * 10 * time.Millisecond, ""},
		{"a tick more", fmt.Sprintf("7 (x) R 1 7 7 0 -1 0 0 0 0 0 %d 1 0", maxTicks), 0, "more than a Duration holds"},
		{"too many ticks", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 18446744073709551615 2 0", 0, "more than a Duration holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseSchedstat(t *testing.T) {
	if got, err := parseSchedstat([]byte("33815065 1753607 124\n")); err != nil || got != 33815065 {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "1 2", "x 2 3", "18446744073709551615 1 1"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSamplerSeesWork(t *testing.T) {
	self := os.Getpid()
	if _, err := Process(self); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := Start(ctx, 10*time.Millisecond, map[string]Counter{"self": func() (time.Duration, error) { return Process(self) }})
	from := time.Now()
	before, _ := Process(self)
	for { // spin until the kernel has counted 50 ms of it
		if now, _ := Process(self); now-before >= 50*time.Millisecond {
			break
		}
	}
	to := time.Now()
	cancel()
	s.Wait()
	used, span, ok := s.Used("self", from, to)
	if !ok || used < 40*time.Millisecond || span <= 0 {
		t.Fatalf("used %v over %v (ok %v), want 50 ms or so", used, span, ok)
	}
	if _, _, ok := s.Used("nothing", from, to); ok {
		t.Error("a counter never sampled has a value")
	}
	if cg, err := CgroupOf(self); err == nil {
		if _, err := Cgroup(cg); err != nil {
			t.Logf("this process's cgroup %s has no CPU accounting: %v", cg, err)
		}
	}
}

// A group counts its processes' CPU from their move on, and nothing of
// what they used before.
func TestGroupCountsFromTheMove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: cgroups")
	}
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; read x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	g, err := NewGroup(fmt.Sprintf("cpustat-test-%d", os.Getpid()))
	if err != nil {
		t.Skipf("no cgroup of our own here: %v", err)
	}
	defer g.Close()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// The loop runs on in the group for a while; count it by its own time.
	before, _ := Process(cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := Process(cmd.Process.Pid)
		if err != nil || now-before >= 20*time.Millisecond || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	used, err := g.Used()
	if err != nil {
		t.Fatal(err)
	}
	total, _ := Process(cmd.Process.Pid)
	if used <= 0 || used > total {
		t.Fatalf("the group counted %v of a process that used %v in all", used, total)
	}
}

// The /proc parsers take what the kernel writes; whatever the
// bytes, they answer or say why, and never a negative time.
func FuzzParsers(f *testing.F) {
	f.Add([]byte("42 (ovs-vswitchd) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 100 0 0"))
	f.Add([]byte("33815065 1753607 124\n"))
	f.Add([]byte("7 (a) b) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseStat(b); err == nil && d < 0 {
			t.Fatalf("stat %q: %v", b, d)
		}
		if d, err := parseSchedstat(b); err == nil && d < 0 {
			t.Fatalf("schedstat %q: %v", b, d)
		}
	})
}
