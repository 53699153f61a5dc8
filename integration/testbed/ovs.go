package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// OVS is Open vSwitch running in the PEER namespace with private
// directories: ovsdb-server and ovs-vswitchd, children of this process.
type OVS struct {
	ns    string
	dir   string
	procs []*exec.Cmd
}

const ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"

func (o *OVS) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+o.dir, "OVS_LOGDIR="+o.dir, "OVS_DBDIR="+o.dir, "OVS_SYSCONFDIR="+o.dir)
}

func (o *OVS) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", o.ns, name}, args...)...)
	cmd.Env = o.env()
	return cmd
}

// Vsctl runs ovs-vsctl against this instance.
func (o *OVS) Vsctl(ctx context.Context, args ...string) (string, error) {
	return o.output(ctx, "ovs-vsctl", append([]string{"--db=unix:" + filepath.Join(o.dir, "db.sock"), "--timeout=10"}, args...)...)
}

// Appctl runs ovs-appctl against this instance's ovs-vswitchd.
func (o *OVS) Appctl(ctx context.Context, args ...string) (string, error) {
	return o.output(ctx, "ovs-appctl", append([]string{"-t", filepath.Join(o.dir, "vswitchd.ctl")}, args...)...)
}

func (o *OVS) output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := o.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// PIDs are the daemons' process IDs by name (ovsdb-server, ovs-vswitchd):
// "ip netns exec" execs them in place, so the commands' PIDs are theirs.
func (o *OVS) PIDs() map[string]int {
	out := map[string]int{}
	for _, c := range o.procs {
		if c.Process != nil && len(c.Args) > 4 {
			out[c.Args[4]] = c.Process.Pid
		}
	}
	return out
}

// LogPath is ovs-vswitchd's log file.
func (o *OVS) LogPath() string { return filepath.Join(o.dir, "vswitchd.log") }

func startOVS(ctx context.Context, ns, dir string, lags []LAG) (*OVS, error) {
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		return nil, fmt.Errorf("open vswitch is not installed (make deps installs it): %w", err)
	}
	o := &OVS{ns: ns, dir: dir}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := run(ctx, "ovsdb-tool", "create", filepath.Join(dir, "conf.db"), ovsSchema); err != nil {
		return nil, err
	}
	start := func(name string, args ...string) error {
		// Not CommandContext: the daemon must outlive ctx until stop.
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
		cmd.Env = o.env()
		if err := cmd.Start(); err != nil {
			return err
		}
		o.procs = append(o.procs, cmd)
		return nil
	}
	db := filepath.Join(dir, "db.sock")
	if err := start("ovsdb-server", filepath.Join(dir, "conf.db"), "--remote=punix:"+db,
		"--unixctl="+filepath.Join(dir, "ovsdb.ctl"), "--log-file="+filepath.Join(dir, "ovsdb.log"), "--no-chdir"); err != nil {
		return nil, err
	}
	if err := waitFile(ctx, db, 10*time.Second); err != nil {
		o.stop()
		return nil, fmt.Errorf("ovsdb-server: %w", err)
	}
	if _, err := o.Vsctl(ctx, "--no-wait", "init"); err != nil {
		o.stop()
		return nil, err
	}
	if err := start("ovs-vswitchd", "unix:"+db, "--unixctl="+filepath.Join(dir, "vswitchd.ctl"),
		"--log-file="+o.LogPath(), "--no-chdir"); err != nil {
		o.stop()
		return nil, err
	}
	if err := waitFile(ctx, filepath.Join(dir, "vswitchd.ctl"), 10*time.Second); err != nil {
		o.stop()
		return nil, fmt.Errorf("ovs-vswitchd: %w", err)
	}
	args := []string{"add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"}
	for _, l := range lags {
		args = append(args, "--", "add-bond", "br0", l.Bond)
		for _, m := range l.Members {
			args = append(args, m.Peer)
		}
		args = append(args, "lacp=active", "bond_mode=balance-tcp", "other_config:lacp-time=fast")
	}
	if _, err := o.Vsctl(ctx, args...); err != nil {
		o.stop()
		return nil, err
	}
	// Every bond and lacp message in the log, none dropped by rate limits.
	if _, err := o.Appctl(ctx, "vlog/disable-rate-limit", "bond", "lacp"); err != nil {
		o.stop()
		return nil, err
	}
	if _, err := o.Appctl(ctx, "vlog/set", "bond:file:dbg", "lacp:file:dbg"); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // no inotify for a socket a daemon binds: poll briefly
		}
	}
}

// stop ends the daemons this bed started, by PID.
func (o *OVS) stop() error {
	for i := len(o.procs) - 1; i >= 0; i-- {
		p := o.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	o.procs = nil
	return nil
}

// MemberStatus is what lacp/show and bond/show say about one bond member.
type MemberStatus struct {
	Status    string // lacp/show's "current attached", "expired attached", "defaulted detached"...
	MayEnable bool
	Enabled   bool // bond/show: "member X: enabled"
	Partner   string
}

var memberLine = regexp.MustCompile(`^member: (\S+): (.*)$`)

// LACPShow parses lacp/show for a bond.
func (o *OVS) LACPShow(ctx context.Context, bond string) (map[string]*MemberStatus, error) {
	out, err := o.Appctl(ctx, "lacp/show", bond)
	if err != nil {
		return nil, err
	}
	res := map[string]*MemberStatus{}
	var cur *MemberStatus
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m := memberLine.FindStringSubmatch(line); m != nil {
			cur = &MemberStatus{Status: m[2]}
			res[m[1]] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if v, ok := strings.CutPrefix(line, "may_enable: "); ok {
			cur.MayEnable = v == "true"
		}
		if v, ok := strings.CutPrefix(line, "partner sys_id: "); ok {
			cur.Partner = v
		}
	}
	bs, err := o.Appctl(ctx, "bond/show", bond)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(bs, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "member "); ok {
			name, state, _ := strings.Cut(rest, ": ")
			if st := res[name]; st != nil {
				st.Enabled = state == "enabled"
			}
		}
	}
	return res, nil
}

func (o *OVS) allEnabled(ctx context.Context, lags []LAG) error {
	for _, l := range lags {
		st, err := o.LACPShow(ctx, l.Bond)
		if err != nil {
			return err
		}
		for _, m := range l.Members {
			s := st[m.Peer]
			if s == nil || !strings.HasPrefix(s.Status, "current") || !s.Enabled {
				return fmt.Errorf("%s member %s: %+v", l.Bond, m.Peer, s)
			}
		}
	}
	return nil
}

// Stats is lacp/show-stats for one member.
type Stats struct {
	RX, TX, Expired, Defaulted int
}

// ShowStats parses lacp/show-stats of a bond.
func (o *OVS) ShowStats(ctx context.Context, bond string) (map[string]Stats, error) {
	out, err := o.Appctl(ctx, "lacp/show-stats", bond)
	if err != nil {
		return nil, err
	}
	res := map[string]Stats{}
	var name string
	var cur Stats
	flush := func() {
		if name != "" {
			res[name] = cur
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := memberLine.FindStringSubmatch(line); m != nil {
			flush()
			name, cur = m[1], Stats{}
			continue
		}
		if m := memberHeader.FindStringSubmatch(line); m != nil {
			flush()
			name, cur = m[1], Stats{}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			continue
		}
		switch strings.TrimSpace(k) {
		case "RX PDUs":
			cur.RX = n
		case "TX PDUs":
			cur.TX = n
		case "Link Expired":
			cur.Expired = n
		case "Link Defaulted":
			cur.Defaulted = n
		}
	}
	flush()
	if len(res) == 0 {
		return nil, errors.New("lacp/show-stats: no members in output")
	}
	return res, nil
}

var memberHeader = regexp.MustCompile(`^member: ([^\s:]+):?$`)

// LogOffset is the current size of the vswitchd log: a mark for LogSince.
func (o *OVS) LogOffset() int64 {
	st, err := os.Stat(o.LogPath())
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince returns the vswitchd log lines written after offset.
func (o *OVS) LogSince(offset int64) ([]string, error) {
	f, err := os.Open(o.LogPath())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return nil, err
	}
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}
