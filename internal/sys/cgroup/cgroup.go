// Package cgroup finds a process's cgroup and sets the idle flag of its CPU
// controller (cpu.idle).
//
// teamd-warm stands the new teamd container up idle beside the running one:
// the tasks of an idle cgroup run only when no task of its siblings' wants
// the CPU, and a CPU that runs only idle tasks counts as free to a task that
// wakes. Without it, a running teamd woken by a partner's PDU on a CPU busy
// with another process (one outside Docker's cgroup) waited behind it for
// up to a third of a second, while the other CPU ran the new container's
// start-up at the least CPU shares there are (BENCHMARKS.md).
//
// The test bed reads a container's CPU time from its cgroup too.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Root is where the kernel's cgroup hierarchies are mounted: one directory
// per cgroup v1 controller (or set of them) under it, or the unified v2
// hierarchy itself.
const Root = "/sys/fs/cgroup"

// ErrNoIdle is matched (errors.Is) when a cgroup has no cpu.idle: a kernel
// before 5.15, or a cgroup v2 tree without the cpu controller.
var ErrNoIdle = errors.New("the cgroup has no cpu.idle (a kernel before 5.15, or no cpu controller)")

// Dir is the directory of process pid's cgroup of the cgroup v1 controller
// (e.g. "cpu"), or of its unified one under v2.
func Dir(pid int, controller string) (string, error) {
	dir, _, err := find(pid, controller)
	return dir, err
}

// find is Dir, and whether the cgroup is its hierarchy's root.
func find(pid int, controller string) (dir string, top bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", false, err
	}
	return parse(b, Root, controller)
}

// parse finds controller's cgroup in a /proc/PID/cgroup file under root: a
// v1 line naming controller wins over the v2 "0::" line. top says it is
// the hierarchy's root.
func parse(b []byte, root, controller string) (dir string, top bool, err error) {
	var v2 string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c != controller {
				continue
			}
			// The hierarchy's directory is named by its controllers.
			if strings.Contains(ctrls, "/") {
				return "", false, fmt.Errorf("/proc cgroup: controllers %q do not name a directory", ctrls)
			}
			return under(root, ctrls, path)
		}
		if id == "0" && ctrls == "" {
			v2 = path
		}
	}
	if v2 == "" {
		return "", false, fmt.Errorf("/proc cgroup: no %s (v1) or unified (v2) line", controller)
	}
	return under(root, "", v2)
}

// under is the directory of cgroup path in the hierarchy mounted at
// root/mount, refusing a path that leads out of it.
func under(root, mount, path string) (dir string, top bool, err error) {
	hier := filepath.Join(root, mount)
	dir = filepath.Join(hier, path)
	if dir != hier && !strings.HasPrefix(dir, hier+"/") {
		return "", false, fmt.Errorf("/proc cgroup: %q leads out of %s", path, hier)
	}
	return dir, dir == hier, nil
}

// SetIdle marks process pid's cgroup (its cpu controller's) idle or not:
// every task in it, those that start later included. It refuses the root
// of a hierarchy, which is every process's that is in no cgroup of its own.
func SetIdle(pid int, idle bool) error {
	path, top, err := idlePath(pid)
	if err != nil {
		return err
	}
	if top {
		return fmt.Errorf("pid %d is in the root cgroup (%s): not marking that idle", pid, filepath.Dir(path))
	}
	v := "0"
	if idle {
		v = "1"
	}
	// O_WRONLY without O_CREATE: a missing file is a kernel without it.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return noIdle(path, err)
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set %s to %s: %w", path, v, err)
	}
	return nil
}

// Idle reports whether process pid's cgroup is marked idle.
func Idle(pid int) (bool, error) {
	path, _, err := idlePath(pid)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false, noIdle(path, err)
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	default:
		return false, fmt.Errorf("%s: %q, want 0 or 1", path, v)
	}
}

// idlePath is the cpu.idle file of process pid's cgroup; top says the
// cgroup is its hierarchy's root.
func idlePath(pid int) (path string, top bool, err error) {
	dir, top, err := find(pid, "cpu")
	if err != nil {
		return "", false, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return filepath.Join(dir, "cpu.idle"), top, nil
}

// noIdle is err, the failure to open path, as ErrNoIdle if the file is
// not there: a kernel or cgroup without it.
func noIdle(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", filepath.Dir(path), ErrNoIdle)
	}
	return err
}
