// Package procstat reads /proc/PID/stat. Its second field, the command
// name in parentheses, may hold spaces and parentheses of its own, so the
// fields that follow are the ones after the last ')'.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Fields returns the fields of a /proc/PID/stat line that follow the
// command name: field n of proc(5) is at index n-3, so the state is
// Fields[0], the parent's pid Fields[1], utime Fields[11], the start time
// Fields[19].
func Fields(stat []byte) ([]string, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc stat: no command name in %q", truncate(stat))
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) == 0 || len(f[0]) != 1 {
		return nil, fmt.Errorf("/proc stat: no process state after the command name in %q", truncate(stat))
	}
	return f, nil
}

// Read returns the Fields of process pid's /proc/PID/stat.
func Read(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	return Fields(b)
}

// truncate keeps an error about a bad line short.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
