package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, file, controller string
		dir                    string
		top                    bool
		err                    string
	}{
		{"v1, joined controllers", "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/system.slice/docker.service\n", "cpuacct",
			"/sys/fs/cgroup/cpu,cpuacct/docker/abc", false, ""},
		{"v1, split controllers", "9:cpu:/docker/abc\n8:cpuacct:/docker/abc\n", "cpu", "/sys/fs/cgroup/cpu/docker/abc", false, ""},
		{"v1 root", "9:cpu:/\n0::/\n", "cpu", "/sys/fs/cgroup/cpu", true, ""},
		{"v2", "0::/system.slice/docker-abc.scope\n", "cpu", "/sys/fs/cgroup/system.slice/docker-abc.scope", false, ""},
		{"v2 root", "0::/\n", "cpu", "/sys/fs/cgroup", true, ""},
		{"hybrid: the v1 controller wins", "0::/user.slice\n1:cpu:/docker/abc\n", "cpu", "/sys/fs/cgroup/cpu/docker/abc", false, ""},
		{"no such controller", "3:memory:/x\n", "cpuacct", "", false, "no cpuacct (v1) or unified (v2) line"},
		{"out of the hierarchy", "0::/../../etc\n", "cpu", "", false, "leads out of"},
		{"v1 out of its mount", "4:cpu:/../memory/x\n", "cpu", "", false, "leads out of"},
		{"garbage", "cpu\n::\n", "cpu", "", false, "no cpu (v1)"},
		{"controllers with a slash", ":cpu,/0:\n", "cpu", "", false, "do not name a directory"},
		{"controllers up a directory", "4:cpu,../..:/x\n", "cpu", "", false, "do not name a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, top, err := parse([]byte(tc.file), "/sys/fs/cgroup", tc.controller)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error with %q", dir, err, tc.err)
				}
				return
			}
			if err != nil || dir != tc.dir || top != tc.top {
				t.Fatalf("got %q, root %v, %v; want %q, root %v", dir, top, err, tc.dir, tc.top)
			}
		})
	}
}

// SetIdle marks a process's cgroup, the kernel's file says so, and Idle
// reads it back; the root cgroup is refused.
func TestSetIdle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: cgroups")
	}
	own, top, err := find(os.Getpid(), "cpu")
	if err != nil {
		t.Skipf("no cpu cgroup here: %v", err)
	}
	if _, err := os.Stat(filepath.Join(own, "cpu.idle")); err != nil {
		t.Skipf("no cpu.idle here: %v", err)
	}
	if top {
		if err := SetIdle(os.Getpid(), true); err == nil || !strings.Contains(err.Error(), "root cgroup") {
			t.Errorf("marking the root cgroup idle: %v, want a refusal", err)
		}
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	dir := filepath.Join(own, fmt.Sprintf("cgroup-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no cgroup of our own here: %v", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	}()
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, want := range []bool{true, false} {
		if err := SetIdle(pid, want); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "cpu.idle"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)) == "1"; got != want {
			t.Errorf("SetIdle(%v): cpu.idle reads %q", want, b)
		}
		if got, err := Idle(pid); err != nil || got != want {
			t.Errorf("Idle: %v, %v; want %v", got, err, want)
		}
	}
}

func TestNoProcess(t *testing.T) {
	// Beyond pid_max: no such process, whatever runs here.
	if err := SetIdle(1<<30, true); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SetIdle of no process: %v, want not found", err)
	}
}

// A /proc/PID/cgroup file is the kernel's, but whatever its bytes, parse
// answers a directory under the root or says why.
func FuzzParse(f *testing.F) {
	f.Add([]byte("4:cpu,cpuacct:/docker/abc\n0::/system.slice/docker.service\n"))
	f.Add([]byte("0::/\n"))
	f.Add([]byte("0::/../x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir, top, err := parse(b, "/sys/fs/cgroup", "cpu")
		if err != nil {
			return
		}
		if dir != "/sys/fs/cgroup" && !strings.HasPrefix(dir, "/sys/fs/cgroup/") {
			t.Fatalf("%q: %s is not under the root", b, dir)
		}
		if top && strings.Count(strings.TrimPrefix(dir, "/sys/fs/cgroup"), "/") > 1 {
			t.Fatalf("%q: %s taken for a hierarchy's root", b, dir)
		}
	})
}
