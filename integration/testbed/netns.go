package testbed

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// namePrefix starts every namespace a bed creates: "tdw<pid>x<n>-dut". The
// pid lets Sweep tell a dead run's leftovers from a live run's.
const namePrefix = "tdw"

// run runs a command and returns its combined output in the error.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// InNetns runs f on a thread switched into the named namespace. Sockets f
// opens stay in that namespace.
func InNetns(ns string, f func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: let it die with the goroutine
		// rather than serve others (LockOSThread without Unlock).
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// killNetnsProcs kills every process inside a namespace this run created.
func killNetnsProcs(ns string) {
	out, _ := run(context.Background(), "ip", "netns", "pids", ns)
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func deleteNetns(ns string) error {
	killNetnsProcs(ns)
	var err error
	for range 50 { // a dying process may hold the namespace a moment
		if _, err = run(context.Background(), "ip", "netns", "del", ns); err == nil {
			return nil
		}
		if _, statErr := os.Stat("/run/netns/" + ns); os.IsNotExist(statErr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// detachNetns removes the name of a namespace that belongs to a process the
// bed did not start: its processes are left alone, and the namespace (with
// its veths) goes when they exit.
func detachNetns(ns string) error {
	_, err := run(context.Background(), "ip", "netns", "del", ns)
	return err
}

// Sweep removes namespaces left by beds of runs that no longer exist (a test
// binary killed before its cleanup ran), and those of pid itself if
// self is true. It touches only names this package makes.
func Sweep(pid int, self bool) {
	names, err := bedNamespaces()
	if err != nil {
		return
	}
	for name, owner := range names {
		alive := syscall.Kill(owner, 0) == nil
		if (owner == pid && self) || (owner != pid && !alive) {
			_ = deleteNetns(name)
		}
	}
}

// Namespaces lists the namespaces that beds of process pid made and that
// are still there.
func Namespaces(pid int) ([]string, error) {
	names, err := bedNamespaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for name, owner := range names {
		if owner == pid {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// bedNamespaces lists the namespaces beds made, each with the process that
// made it ("tdw<pid>x<n>-dut").
func bedNamespaces() (map[string]int, error) {
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	names := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], namePrefix) {
			continue
		}
		rest := strings.TrimPrefix(f[0], namePrefix)
		x := strings.IndexByte(rest, 'x')
		if x < 0 {
			continue
		}
		if owner, err := strconv.Atoi(rest[:x]); err == nil {
			names[f[0]] = owner
		}
	}
	return names, nil
}
