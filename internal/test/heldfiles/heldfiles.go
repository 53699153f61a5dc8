// Package heldfiles finds the unnamed files (O_TMPFILE) that processes
// hold open in a directory: for tests, the record files shims reserve
// ahead of their writes (statefile.Dir.Reserve).
package heldfiles

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Unnamed returns the inode of every unnamed file in dir that one of pids
// holds open (every process's, if pids is empty), and the pid holding it.
// A process or descriptor gone meanwhile is passed over.
func Unnamed(dir string, pids ...int) (map[uint64]int, error) {
	pattern := []string{"/proc/[0-9]*/fd/*"}
	if len(pids) > 0 {
		pattern = pattern[:0]
		for _, pid := range pids {
			pattern = append(pattern, fmt.Sprintf("/proc/%d/fd/*", pid))
		}
	}
	held := map[uint64]int{}
	for _, p := range pattern {
		fds, err := filepath.Glob(p)
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			// An unnamed file's link reads "<dir>/#<inode> (deleted)".
			link, err := os.Readlink(fd)
			if err != nil {
				continue
			}
			rest, ok := strings.CutPrefix(link, dir+"/#")
			if !ok {
				continue
			}
			if rest, ok = strings.CutSuffix(rest, " (deleted)"); !ok {
				continue
			}
			ino, err := strconv.ParseUint(rest, 10, 64)
			if err != nil {
				continue
			}
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			held[ino] = pid
		}
	}
	return held, nil
}
