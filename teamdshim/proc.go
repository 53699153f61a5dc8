package teamdshim

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listeningSockets lists the paths of the Unix sockets process pid
// listens on: its socket fds (/proc/PID/fd) matched by inode with the
// listening entries of /proc/PID/net/unix (flag __SO_ACCEPTCON), in the
// process's own network namespace.
func listeningSockets(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const acceptCon = 0x10000
	var paths []string
	sc := bufio.NewScanner(f)
	sc.Scan() // Num RefCount Protocol Flags Type St Inode Path
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !inodes[f[6]] {
			continue
		}
		if flags, err := strconv.ParseUint(f[3], 16, 32); err == nil && flags&acceptCon != 0 {
			paths = append(paths, f[7])
		}
	}
	return paths, sc.Err()
}
