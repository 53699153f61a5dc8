// Package inotify reads how much of the kernel's per-user inotify limits a
// user's processes use, from /proc: what a run that adds watches must check
// before it starts.
//
// fs.inotify.max_user_instances (128 by default) and max_user_watches are
// per user and shared by every process of that user on the host, in every
// container: a switch's other root daemons use some of them.
package inotify

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is one user's inotify use and the limits it counts against.
type Usage struct {
	UID          int
	Instances    int // inotify instances its processes hold
	Watches      int // watches in them
	MaxInstances int // fs.inotify.max_user_instances
	MaxWatches   int // fs.inotify.max_user_watches
}

// FreeInstances is how many more instances the user can open.
func (u Usage) FreeInstances() int { return u.MaxInstances - u.Instances }

// FreeWatches is how many more watches the user can add.
func (u Usage) FreeWatches() int { return u.MaxWatches - u.Watches }

// Read counts the inotify instances and watches that the processes whose
// real uid is uid hold, in the proc file system at procfs (usually
// "/proc"). Processes that go away while they are read are skipped; an
// instance shared by two processes (inherited) is counted twice, which
// errs on the safe side.
func Read(procfs string, uid int) (Usage, error) {
	u := Usage{UID: uid}
	var err error
	if u.MaxInstances, err = readInt(filepath.Join(procfs, "sys/fs/inotify/max_user_instances")); err != nil {
		return u, err
	}
	if u.MaxWatches, err = readInt(filepath.Join(procfs, "sys/fs/inotify/max_user_watches")); err != nil {
		return u, err
	}
	des, err := os.ReadDir(procfs)
	if err != nil {
		return u, fmt.Errorf("inotify: %w", err)
	}
	for _, de := range des {
		if _, err := strconv.Atoi(de.Name()); err != nil {
			continue
		}
		pdir := filepath.Join(procfs, de.Name())
		if owner, err := realUID(pdir); err != nil || owner != uid {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(pdir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(pdir, "fd", fd.Name())); err != nil || l != "anon_inode:inotify" {
				continue
			}
			u.Instances++
			if b, err := os.ReadFile(filepath.Join(pdir, "fdinfo", fd.Name())); err == nil {
				u.Watches += bytes.Count(b, []byte("inotify wd:"))
			}
		}
	}
	return u, nil
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("inotify: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("inotify: %s: %q is not a number", path, strings.TrimSpace(string(b)))
	}
	return n, nil
}

// realUID is the first of the Uid: line's numbers in a process's status.
func realUID(pdir string) (int, error) {
	f, err := os.Open(filepath.Join(pdir, "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.Atoi(fields[0])
		}
	}
	return 0, fmt.Errorf("%s/status: no Uid line", pdir)
}
