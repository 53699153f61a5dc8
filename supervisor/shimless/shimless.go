// Package shimless is the host's view of a teamd container that runs its
// teamds without teamd-shim, as every SONiC switch does before its first
// teamdwarm upgrade: teammgrd starts each teamd itself, daemonized, with
// its pid file and control socket in the container's own /var/run/teamd
// and its dump files in -L.
//
// The supervisor runs on the host, in another PID and mount namespace. It
// finds the container's teamds by their PID namespace (that of the
// container's init), reaches the container's files through
// /proc/<init>/root with every symlink resolved inside that root (an
// absolute symlink such as Debian's /var/run -> /run would otherwise lead
// to the host's), and signals a teamd through a pidfd opened only after
// the process was proven to be the one found (same start time), never by
// name: "pkill -USR1 teamd", what upgrade_docker runs, also hits
// tlm_teamd.
package shimless

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/internal/sys/procstat"
	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"golang.org/x/sys/unix"
)

// Teamd is one teamd process of the container.
type Teamd struct {
	LAG     string     // -t
	PID     int        // on the host
	NSPID   int        // in the container's PID namespace (its pid file's)
	Start   uint64     // start time in clock ticks after boot (/proc/<pid>/stat)
	Program string     // argv[0], in the container
	Args    teamd.Args // argv[1:]
	Config  string     // the -c JSON, or the -f file's contents
	DumpDir string     // -L, in the container ("" if none)
	PIDFile string     // -p, or the run directory's <LAG>.pid
}

// Container is what Find saw in one container.
type Container struct {
	Init   int     // the container's init, on the host
	Teamds []Teamd // sorted by LAG
	// Shims counts the teamd-shim processes: a container with any is not
	// shimless.
	Shims int
}

// maxCmdline bounds what is read of a process's command line (a teamd
// config is a few hundred bytes; teamd's own limit is far below this).
const maxCmdline = 1 << 20

// Find lists the teamd processes in the PID namespace of process init (a
// container's PID 1). A container that shares the host's PID namespace is
// refused: its processes cannot be told from the host's.
func Find(init int) (*Container, error) {
	ns, err := pidNS(init)
	if err != nil {
		return nil, fmt.Errorf("the container's init (pid %d): %w", init, err)
	}
	if self, err := pidNS(os.Getpid()); err == nil && self == ns {
		return nil, errors.New("the container shares teamd-warm's PID namespace (--pid=host?): its teamds cannot be told from the host's")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	c := &Container{Init: init}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if n, err := pidNS(pid); err != nil || n != ns {
			continue // gone, or another namespace's
		}
		argv, err := cmdline(pid)
		if err != nil || len(argv) == 0 {
			continue // gone, or a kernel thread
		}
		switch filepath.Base(argv[0]) {
		case "teamd-shim":
			c.Shims++
		case "teamd", "teamd.real":
			t, err := newTeamd(pid, argv)
			if err != nil {
				return nil, fmt.Errorf("teamd pid %d (%s): %w", pid, strings.Join(argv, " "), err)
			}
			if t != nil {
				c.Teamds = append(c.Teamds, *t)
			}
		}
	}
	slices.SortFunc(c.Teamds, func(a, b Teamd) int { return teamd.CompareNames(a.LAG, b.LAG) })
	for i := 1; i < len(c.Teamds); i++ {
		if a, b := c.Teamds[i-1], c.Teamds[i]; a.LAG == b.LAG {
			return nil, fmt.Errorf("two teamds run %s (pids %d and %d)", a.LAG, a.PID, b.PID)
		}
	}
	return c, nil
}

// newTeamd reads one teamd's identity; nil for a teamd that is not a
// daemon for a device (teamd -k, -e, -h: a short-lived helper).
func newTeamd(pid int, argv []string) (*Teamd, error) {
	a, err := teamd.ParseArgs(argv[1:])
	if err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}
	if a.Has("k") || a.Has("e") || a.Has("h") || a.Has("v") {
		return nil, nil
	}
	t := &Teamd{PID: pid, Program: argv[0], Args: a}
	t.LAG, _ = a.Value("t")
	if t.LAG == "" {
		return nil, errors.New("no team device (-t)")
	}
	t.Config, _ = a.Value("c")
	t.DumpDir, _ = a.Value("L")
	if t.PIDFile, _ = a.Value("p"); t.PIDFile == "" {
		t.PIDFile = filepath.Join(teamd.DefaultRunDir, t.LAG+".pid")
	}
	if t.NSPID, err = nsPID(pid); err != nil {
		return nil, err
	}
	if _, t.Start, err = procStat(pid); err != nil {
		return nil, err
	}
	return t, nil
}

func pidNS(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
}

func cmdline(pid int) ([]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, maxCmdline)
	n, err := f.Read(b)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b[:n], []byte{0})
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// nsPID is the process's PID in its own namespace: the last of the
// NSpid line of /proc/<pid>/status.
func nsPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(f[len(f)-1])
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no NSpid line", pid)
}

// procStat reads a process's state and start time from /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// parseStat reads fields 3 (state) and 22 (starttime, in clock ticks after
// boot) of /proc/<pid>/stat, which follow the parenthesized command name
// (the process sets that: it may hold spaces and parentheses).
func parseStat(stat []byte) (state byte, start uint64, err error) {
	f, err := procstat.Fields(stat)
	if err != nil {
		return 0, 0, err
	}
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("stat: %d fields after the command name, want 20 or more", len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], start, err
}

// Root is the container's root file system, seen from the host.
type Root struct {
	fd   int
	dirs map[string]int // directories opened inside the root, by path
}

// OpenRoot opens the root of process init's mount namespace.
func OpenRoot(init int) (*Root, error) {
	return OpenRootDir(fmt.Sprintf("/proc/%d/root", init))
}

// OpenRootDir opens dir as a container's root file system (a container's
// merged directory, or a test's).
func OpenRootDir(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("the container's root (%s): %w", dir, err)
	}
	return &Root{fd: fd, dirs: map[string]int{}}, nil
}

// Close releases the root and the directories opened in it.
func (r *Root) Close() error {
	for _, fd := range r.dirs {
		unix.Close(fd)
	}
	r.dirs = nil
	return unix.Close(r.fd)
}

// Path is a host path to dir inside the container, every symlink on the
// way resolved inside the container's root. It names an open directory
// (/proc/self/fd/N), valid until Close, so that files under it are read
// and sockets dialled with the ordinary calls.
func (r *Root) Path(dir string) (string, error) {
	dir = filepath.Clean("/" + dir)
	if fd, ok := r.dirs[dir]; ok {
		return fmt.Sprintf("/proc/self/fd/%d", fd), nil
	}
	fd, err := unix.Openat2(r.fd, strings.TrimPrefix(dir, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return "", fmt.Errorf("%s in the container: %w", dir, err)
	}
	r.dirs[dir] = fd
	return fmt.Sprintf("/proc/self/fd/%d", fd), nil
}

// File is a host path to file inside the container (see Path): its
// directory resolved in the root, its last element not followed by the
// reader if it opens with O_NOFOLLOW.
func (r *Root) File(file string) (string, error) {
	file = filepath.Clean("/" + file)
	dir, err := r.Path(filepath.Dir(file))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(file)), nil
}

// Alive reports whether t is still the process Find saw, and running (a
// zombie has exited: only its parent has not reaped it yet).
func (t *Teamd) Alive() bool {
	state, start, err := procStat(t.PID)
	return err == nil && start == t.Start && state != 'Z' && state != 'X'
}

// ErrGone is matched when the teamd is no longer the process Find saw.
var ErrGone = errors.New("teamd has exited")

// Process is an open handle on one teamd: signals reach it and no other
// process, even once its PID is reused.
type Process struct {
	t  *Teamd
	fd int // pidfd
}

// Open opens a handle on t, refused with ErrGone if t has exited.
func (t *Teamd) Open() (*Process, error) {
	fd, err := unix.PidfdOpen(t.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("%s (pid %d): %w", t.LAG, t.PID, ErrGone)
		}
		return nil, fmt.Errorf("%s (pid %d): pidfd: %w", t.LAG, t.PID, err)
	}
	// The pidfd names whatever process has the PID now: it is t only if
	// the start time is t's.
	if !t.Alive() {
		unix.Close(fd)
		return nil, fmt.Errorf("%s (pid %d): %w", t.LAG, t.PID, ErrGone)
	}
	return &Process{t: t, fd: fd}, nil
}

// Close releases the handle.
func (p *Process) Close() error { return unix.Close(p.fd) }

// Signal sends sig to the teamd.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := unix.PidfdSendSignal(p.fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("%s (pid %d): %w", p.t.LAG, p.t.PID, ErrGone)
		}
		return fmt.Errorf("%s (pid %d): %w", p.t.LAG, p.t.PID, err)
	}
	return nil
}

// Wait waits up to d (and ctx) for the teamd to exit, and reports whether
// it did. It is not the teamd's parent, so it sees the exit, not the
// status.
func (p *Process) Wait(ctx context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 || ctx.Err() != nil {
			return false
		}
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(min(left, 50*time.Millisecond)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return !p.t.Alive()
		}
		if n > 0 {
			return true
		}
	}
}

// Stop stops the teamd with sig and waits up to d for it to exit; one
// that does not is killed. It says in words how the teamd ended, for the
// snapshot's teamd_stop, and whether it is gone: a teamd that outlives
// even SIGKILL (its container frozen) must not be taken for silent.
func (p *Process) Stop(ctx context.Context, sig syscall.Signal, d time.Duration) (how string, gone bool) {
	start := time.Now()
	if err := p.Signal(sig); err != nil {
		if errors.Is(err, ErrGone) {
			return "had exited before the warm stop", true
		}
		how = fmt.Sprintf("killed: %s failed (%v)", signame.String(sig), err)
	} else if p.Wait(ctx, d) {
		return fmt.Sprintf("exited %v after %s", time.Since(start).Round(time.Millisecond), signame.String(sig)), true
	} else {
		how = fmt.Sprintf("killed after %v: did not exit on %s", d, signame.String(sig))
	}
	_ = p.Signal(syscall.SIGKILL)
	if !p.Wait(context.WithoutCancel(ctx), killWait) {
		return fmt.Sprintf("did not exit on %s within %v, nor on SIGKILL within %v", signame.String(sig), d, killWait), false
	}
	return how, true
}

// killWait bounds the wait for a teamd's exit after SIGKILL.
const killWait = 5 * time.Second

// Lookup is the teamd of host PID pid, found by its PID rather than in a
// container (a test's teamd, started on the host).
func Lookup(pid int) (*Teamd, error) {
	argv, err := cmdline(pid)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("pid %d: no command line", pid)
	}
	t, err := newTeamd(pid, argv)
	if err == nil && t == nil {
		err = fmt.Errorf("pid %d (%s) runs no team device", pid, strings.Join(argv, " "))
	}
	return t, err
}

// StateDump asks the teamd for its state over its control socket (a host
// path), and checks that the socket is its own.
func (t *Teamd) StateDump(ctx context.Context, socket string) (*teamd.State, error) {
	ctx, cancel := context.WithTimeout(ctx, teamd.DefaultTimeout)
	defer cancel()
	st, err := teamd.NewClient(socket).StateDump(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s (%s in the container): %w", t.LAG, teamd.SocketPath("", t.LAG), err)
	}
	if st.Setup.PID != 0 && st.Setup.PID != t.NSPID {
		return nil, fmt.Errorf("%s: its control socket is answered by pid %d, not by its teamd (pid %d in the container)", t.LAG, st.Setup.PID, t.NSPID)
	}
	return st, nil
}

// HandOver says how to hand a shimless teamd's LAG over.
type HandOver struct {
	Socket  string // host path of its control socket
	DumpDir string // host path of its -L directory, "" if it has none
	// The snapshot's: the epoch (1 for a shimless teamd), the digest of
	// its config, the teamd (nil if not known), the writer.
	Epoch       uint64
	Digest      string
	Teamd       *proto.TeamdInfo
	Writer      proto.Process
	StopTimeout time.Duration // SIGKILL past it
	// Fallback stands in for the StateDump if teamd does not answer.
	Fallback *teamd.State
	Log      *slog.Logger
}

// handOverDump bounds the StateDump before the warm stop (teamd answers in
// milliseconds; one that does not is stopped with the state known before).
const handOverDump = time.Second

// HandOver is what teamd-shim does on SIGUSR1, done for a teamd that runs
// without one: its StateDump, SONiC's warm stop (SIGUSR1 to this process
// alone), a bounded wait for its exit, SIGKILL past it, and the snapshot
// from that StateDump and the dump files its warm stop wrote. The
// snapshot is returned only once the teamd is gone (publishing it tells
// the standby the old speaker is silent), nil if it had exited already.
// how says how the teamd ended.
func (t *Teamd) HandOver(ctx context.Context, h HandOver) (snap *proto.Snapshot, how string, _ error) {
	p, err := t.Open()
	if errors.Is(err, ErrGone) {
		return nil, "had exited", nil
	} else if err != nil {
		return nil, "", err
	}
	defer p.Close()
	takenMono, taken := monoclock.Now(), time.Now()
	// Bounded as a shim bounds it: the cutover's deadline runs meanwhile.
	dctx, cancel := context.WithTimeout(ctx, handOverDump)
	st, dumpErr := t.StateDump(dctx, h.Socket)
	cancel()
	if dumpErr != nil {
		st = h.Fallback
	}
	lastTxMono, lastTx := monoclock.Now(), time.Now()
	how, gone := p.Stop(ctx, syscall.SIGUSR1, h.StopTimeout)
	how = fmt.Sprintf("teamd pid %d %s", t.PID, how)
	if !gone {
		return nil, how, fmt.Errorf("%s: %s", t.LAG, how)
	}
	if dumpErr != nil {
		how += fmt.Sprintf("; its state is the one known before (%v)", dumpErr)
	}
	snap = &proto.Snapshot{Schema: proto.SchemaVersion, LAG: t.LAG, Epoch: h.Epoch, ConfigDigest: h.Digest, Writer: h.Writer,
		TeamdStop: how, TakenMono: takenMono, Taken: taken, Teamd: h.Teamd}
	if st != nil {
		read := func(name string, check func([]byte) error) []byte {
			if h.DumpDir == "" {
				return nil
			}
			b, err := statefile.ReadBounded(filepath.Join(h.DumpDir, name))
			if err == nil {
				err = check(b)
			}
			if err != nil {
				return nil
			}
			return b
		}
		snap.TeamMAC, snap.Runner = teamd.SnapshotRunner(st)
		snap.Members = teamd.SnapshotMembers(st, lastTxMono, lastTx,
			func(port string) []byte {
				return read(port, func(b []byte) error { _, err := teamd.ParsePortDump(b); return err })
			},
			func(port, field string, err error) {
				if h.Log != nil {
					h.Log.Warn(field+" info from teamd", "lag", t.LAG, "port", port, "err", err)
				}
			})
		snap.LAGDump = read(t.LAG, func(b []byte) error { _, err := teamd.ParseLAGDump(b); return err })
	}
	return snap, how, nil
}
