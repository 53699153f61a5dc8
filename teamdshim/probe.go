package teamdshim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// envProbe carries init's probe of teamd to its shims: what the program
// is, and which file it was, so that a shim trusts it only for the same
// file.
const envProbe = "TEAMDWARM_TEAMD_PROBE"

type probed struct {
	Info proto.TeamdInfo `json:"info"`
	File string          `json:"file"` // fileID of the program probed
}

// fileID names one version of a file: device, inode, size, mtime.
func fileID(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no stat", path)
	}
	return fmt.Sprintf("%d:%d:%d:%d", st.Dev, st.Ino, st.Size, fi.ModTime().UnixNano()), nil
}

// probeOnce probes program for init and renders the result for envProbe.
func probeOnce(ctx context.Context, program string) (string, error) {
	id, err := fileID(program)
	if err != nil {
		return "", err
	}
	info, err := teamd.Probe(ctx, program)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(probed{Info: *info, File: id})
	return string(b), err
}

// probedByInit is init's probe of program, if init made one of this very
// file; nil otherwise. It is read once: teamd does not inherit it.
func probedByInit(program string) *proto.TeamdInfo {
	v := os.Getenv(envProbe)
	if v == "" {
		return nil
	}
	os.Unsetenv(envProbe)
	var p probed
	if err := json.Unmarshal([]byte(v), &p); err != nil || p.Info.Program != program {
		return nil
	}
	if id, err := fileID(program); err != nil || id != p.File || !teamd.Profile(p.Info.Profile).Valid() {
		return nil
	}
	return &p.Info
}
