package teamdshim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/procstat"
	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/internal/sys/timerslack"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"golang.org/x/sys/unix"
)

// InitOptions configure Init, the entrypoint (PID 1) of a teamd container.
type InitOptions struct {
	// ConfigDir holds one teamd JSON config per LAG (*.conf or *.json);
	// the LAG is the config's "device", or the file name without its
	// extension.
	ConfigDir string
	// Wrapper is the command that runs one LAG: the shim's own run mode,
	// e.g. ["/usr/bin/teamd-shim", "run", "--"]. Init appends teamd's
	// command line to it.
	Wrapper []string
	// Teamd is the teamd program and the options every LAG gets, e.g.
	// ["/usr/bin/teamd", "-L", "/var/warmboot/teamd/"]; Init adds
	// -t <lag> -f <config>.
	Teamd []string
	// Dir is the record directory, watched once for every wrapper
	// (statefile.Hub); DefaultDir if "".
	Dir string
	// ShimTimerSlack is the timer slack the shims start with (see
	// internal/sys/timerslack): DefaultShimTimerSlack if 0; if negative,
	// they keep init's own. Their teamd is started with the slack init
	// was given (before ReexecWithTimerSlack, if it ran).
	ShimTimerSlack time.Duration
	Logger         *slog.Logger
}

// ReexecWithTimerSlack executes init again, once, from a thread whose
// timer slack is d, so that init's own threads, the Go runtime's among
// them, start with the slack its shims get (InitOptions.ShimTimerSlack),
// and with their runtime settings (shimGODEBUG): init wakes for every
// record and every child's exit of a handoff. The slack init was given is
// kept in the environment, for teamd. It returns nil at once if d is not
// positive or init did this already, and does not return if the exec
// succeeds.
func ReexecWithTimerSlack(d time.Duration) error {
	if d <= 0 || os.Getenv(envTeamdSlack) != "" {
		return nil
	}
	own, err := timerslack.Get()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("init: re-exec with timer slack: %w", err)
	}
	setEnvSlack(own) // if the exec fails, it is still init's own
	return timerslack.Exec(d, self, os.Args, withShimGODEBUG(os.Environ()))
}

// shimGODEBUG is added to the GODEBUG of the shims init starts (and of
// init's re-exec): no asynchronous preemption. On two busy cores the Go
// runtime's sysmon finds a shim's goroutine running for 10 ms whenever the
// kernel has descheduled its thread, and signals the thread (SIGURG) to
// preempt it: 1.1 signals a handoff at 128 LAGs, each a wake of a thread
// that then waits for a CPU again. A shim's goroutines run for
// microseconds between waits, so preempting them at their next function
// call, as the runtime then does, is soon enough, for the GC too. teamd
// does not get it (TeamdGODEBUGFromInit).
const shimGODEBUG = "asyncpreemptoff=1"

// envGODEBUGAdded says that init added shimGODEBUG to the GODEBUG it was
// given, for the shim to take it out again before it starts teamd.
const envGODEBUGAdded = "TEAMDWARM_GODEBUG_ADDED"

// withShimGODEBUG returns env with shimGODEBUG added to its GODEBUG (and
// envGODEBUGAdded set); a GODEBUG that sets asyncpreemptoff already is
// left as it is.
func withShimGODEBUG(env []string) []string {
	env = slices.Clone(env)
	for i, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		switch {
		case !ok:
			continue
		case strings.Contains(","+v, ",asyncpreemptoff="):
			return env
		case v == "":
			env[i] = "GODEBUG=" + shimGODEBUG
		default:
			env[i] = kv + "," + shimGODEBUG
		}
		return append(env, envGODEBUGAdded+"=1")
	}
	return append(env, "GODEBUG="+shimGODEBUG, envGODEBUGAdded+"=1")
}

// givenSlack is the timer slack init was given: before
// ReexecWithTimerSlack, if it ran, else its own.
func givenSlack() (time.Duration, error) {
	if d := envSlack(); d > 0 {
		return d, nil
	}
	return timerslack.Get()
}

// DefaultShimTimerSlack lets a shim's timers, and the Go runtime's sysmon
// in it, fire up to a millisecond late. A shim's timers are 20 ms and
// more, most of them a period; what must be quick (the takeover, the
// handoff after teamd's PDU) waits on events, not timers. Measured on a two-core
// switch (BENCHMARKS.md), it cut the CPU of a 128-LAG handoff by a sixth.
const DefaultShimTimerSlack = time.Millisecond

// LAGConfig is one LAG's config file.
type LAGConfig struct {
	LAG  string
	Path string
}

// ReadConfigDir lists the LAG configs of dir, in teamd.CompareNames order.
func ReadConfigDir(dir string) ([]LAGConfig, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("teamd configs: %w", err)
	}
	var out []LAGConfig
	seen := map[string]string{}
	for _, de := range des {
		ext := filepath.Ext(de.Name())
		if de.IsDir() || (ext != ".conf" && ext != ".json") {
			continue
		}
		path := filepath.Join(dir, de.Name())
		b, err := statefile.ReadBounded(path)
		if err != nil {
			return nil, fmt.Errorf("teamd config: %w", err)
		}
		var c struct {
			Device string `json:"device"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("teamd config %s: %w", path, err)
		}
		lag := c.Device
		if lag == "" {
			lag = strings.TrimSuffix(de.Name(), ext)
		}
		if !proto.ValidLAGName(lag) {
			return nil, fmt.Errorf("teamd config %s: device %q is not a LAG name", path, lag)
		}
		if other, dup := seen[lag]; dup {
			return nil, fmt.Errorf("teamd configs %s and %s both configure %s", other, path, lag)
		}
		seen[lag] = path
		out = append(out, LAGConfig{LAG: lag, Path: path})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("teamd configs: no *.conf or *.json in %s", dir)
	}
	slices.SortFunc(out, func(a, b LAGConfig) int { return teamd.CompareNames(a.LAG, b.LAG) })
	return out, nil
}

// Restarts: a wrapper that was killed by a signal, or whose teamd was
// (exit 128+n), is restarted at once, up to maxRestarts times a minute: a
// standby's shim that dies after the cutover must come back to take over
// (its passive teamd runs on and is adopted), and an active one to keep
// its LAG managed. A wrapper that failed on its own (exit 1: a config, a
// fence) is not: it would fail again. Nothing is restarted once init has
// been told to stop or to hand over.
const (
	maxRestarts   = 5
	restartWindow = time.Minute
)

// EnvWatchFD names the descriptor on which init passes a shim its
// subscription to the shared watch of the record directory.
const EnvWatchFD = "TEAMDWARM_WATCH_FD"

// SharedWatch returns the subscription init passed this process (see
// InitOptions.Dir), nil if none; once. The descriptor is closed on exec,
// so teamd does not inherit it.
func SharedWatch() *os.File {
	v := os.Getenv(EnvWatchFD)
	if v == "" {
		return nil
	}
	os.Unsetenv(EnvWatchFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	unix.CloseOnExec(fd)
	// Non-blocking, so that closing it ends a blocked read.
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "shared-watch")
}

// A standby container starts its shims startWindow at a time: the next
// starts when one of those starting is ready (its .standby lands, seen
// through the shared watch) or when none has been for startStall. A
// switch's 64 teamds and shims starting at once on two cores starved the
// running container's teamds (the peer saw gaps near 2 s). A standby is
// ready when its teamd hears the partner, a PDU a second, so the window
// also sets a3's pace: 16 at once took 8.2 s for 128 LAGs on two cores, 32
// took 7.3 s (medians), and with the container idle (teamd-warm marks its
// cgroup so) the running teamds' gaps did not grow (BENCHMARKS.md). An
// active container, one without the shared watch, and one with few LAGs
// start every shim at once.
const (
	startWindow = 32
	startStall  = 3 * time.Second
)

// waves is init's start of its shims, owned by Init's loop.
type waves struct {
	pending  []LAGConfig     // not started yet
	starting map[string]bool // started, not ready yet
	ready    <-chan string   // LAGs whose .standby landed; nil: no waves
	timer    *time.Timer
	launch   func(LAGConfig)
	// unsubscribe ends the subscription ready is fed from, once no shim is
	// left to start: it would otherwise carry every LAG's .standby through
	// the container's life, its removal at each takeover included.
	unsubscribe func()
}

func (in *initState) newWaves(ctx context.Context, configs []LAGConfig, launch func(LAGConfig)) *waves {
	w := &waves{pending: configs, starting: map[string]bool{}, launch: launch}
	if os.Getenv(proto.EnvRole) != string(proto.RoleStandby) || in.hub == nil || len(configs) <= startWindow {
		return w
	}
	r, err := in.hub.Subscribe(statefile.AllLAGs, proto.KindStandby)
	if err != nil {
		in.log.Warn("every shim starts at once", "err", err)
		return w
	}
	ready := make(chan string, len(configs))
	var once sync.Once
	w.unsubscribe = func() { once.Do(func() { r.Close() }) } // the reader below ends on it
	go func() {
		defer w.unsubscribe()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if lag, k, ok := proto.ParseFileName(sc.Text()); ok && k == proto.KindStandby {
				select {
				case ready <- lag:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	w.ready, w.timer = ready, time.NewTimer(startStall)
	in.log.Info("starting the standby shims in waves", "lags", len(configs), "at_once", startWindow)
	return w
}

// startMore starts shims until the window is full.
func (w *waves) startMore() {
	for len(w.pending) > 0 && (w.ready == nil || len(w.starting) < startWindow) {
		c := w.pending[0]
		w.pending = w.pending[1:]
		w.starting[c.LAG] = true
		w.launch(c)
	}
	if len(w.pending) == 0 {
		w.stop()
		return
	}
	if w.timer != nil {
		w.timer.Reset(startStall)
	}
}

// stop starts no more shims: every one has started, or init stops or hands
// over.
func (w *waves) stop() {
	w.pending = nil
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.unsubscribe != nil {
		w.unsubscribe()
	}
	w.ready = nil
}

// stall fires when no shim got ready for startStall while some wait.
func (w *waves) stall() <-chan time.Time {
	if w.timer == nil || len(w.pending) == 0 {
		return nil
	}
	return w.timer.C
}

// orphanWait bounds how long init waits, after its last wrapper, for the
// orphaned teamds it signalled: PID 1's exit would kill them mid-stop.
const orphanWait = 2 * time.Second

// wrapper is one LAG's running wrapper.
type wrapper struct {
	lag      string
	argv     []string
	restarts []time.Time
	started  time.Time // its process's start
}

// A wrapper started less than listenGrace before a signal is forwarded may
// not listen for it yet: Go drops a SIGUSR1 or SIGTERM that arrives
// between its runtime's start and the shim's signal.Notify, a few
// milliseconds (before the runtime's start, the signal's default action
// ends it, and init forwards to the teamd it leaves). Such a wrapper is
// sent the signal again after listenGrace; a second SIGUSR1 or SIGTERM
// does nothing more than the first.
const listenGrace = 200 * time.Millisecond

// leftoverAge is how old a temp file in the record directory must be for
// init to take it for a dead writer's (statefile.RemoveLeftovers): far
// longer than any write, even one that a loaded switch slows to seconds.
const leftoverAge = time.Minute

// Init runs one wrapper per LAG config and stays until every wrapper has
// exited: it forwards SIGUSR1, SIGTERM, SIGINT, SIGQUIT and SIGHUP to every
// wrapper (and to the orphaned teamd of a LAG whose wrapper is gone),
// restarts a wrapper that was killed, reaps every child (orphans included:
// as PID 1, or as a child subreaper elsewhere), and returns 0 only if
// every wrapper exited 0 in the end.
//
// It must outlive the handoff: when PID 1 exits the kernel kills the rest
// of the container, so Init returns only after the last wrapper.
func Init(ctx context.Context, opts InitOptions) (int, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if len(opts.Wrapper) == 0 || len(opts.Teamd) == 0 {
		return 1, errors.New("init: no wrapper or teamd command")
	}
	configs, err := ReadConfigDir(opts.ConfigDir)
	if err != nil {
		return 1, err
	}
	if os.Getpid() != 1 {
		// Orphans of our wrappers come to us, as they would to PID 1.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 1, fmt.Errorf("init: become a subreaper: %w", err)
		}
	}
	// One owner of wait4: this loop. Subscribed before any child starts so
	// that no exit is missed; children are started with os.StartProcess
	// and never waited for elsewhere.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	in := &initState{log: log, wrappers: map[int]*wrapper{}, failed: map[string]string{}}
	in.shimSlack = opts.ShimTimerSlack
	if in.shimSlack == 0 {
		in.shimSlack = DefaultShimTimerSlack
	}
	if in.shimSlack > 0 {
		// teamd is not ours to tune: it gets the slack init was given
		// (before ReexecWithTimerSlack, if init ran it).
		if own, err := givenSlack(); err != nil {
			log.Warn("the shims keep init's timer slack", "err", err)
			in.shimSlack = 0
		} else {
			setEnvSlack(own)
			log.Info("timer slack", "shims", in.shimSlack, "teamd", own)
		}
	}
	in.env = withShimGODEBUG(os.Environ())
	in.role = proto.Role(os.Getenv(proto.EnvRole)) // run's default, as init passes no --role
	dir := opts.Dir
	if dir == "" {
		dir = DefaultDir
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	if in.hub, err = statefile.NewHub(hubCtx, dir); err != nil {
		log.Warn("no shared watch of the record directory: each standby shim watches it on its own", "err", err)
	}
	if gone, err := statefile.RemoveLeftovers(dir, leftoverAge); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("temp files left by killed writers", "err", err)
	} else if len(gone) > 0 {
		log.Info("removed temp files that writers killed mid-write left", "files", gone)
	}
	// teamd is probed once for every shim: two execs of it per LAG cost a
	// switch's start-up dearly.
	if v, err := probeOnce(ctx, opts.Teamd[0]); err != nil {
		log.Warn("teamd not probed; each shim probes it", "err", err)
	} else {
		in.env = append(in.env, envProbe+"="+v)
	}
	w := in.newWaves(hubCtx, configs, func(c LAGConfig) {
		in.start(&wrapper{lag: c.LAG, argv: append(append(slices.Clone(opts.Wrapper), opts.Teamd...), "-t", c.LAG, "-f", c.Path)})
	})
	w.startMore()
	for len(in.wrappers) > 0 || len(w.pending) > 0 {
		select {
		case <-ctx.Done():
			in.forward(syscall.SIGTERM)
			w.stop()
			ctx = context.Background()
		case sig := <-sigs:
			if sig != syscall.SIGCHLD {
				in.forward(sig.(syscall.Signal))
				w.stop() // stopped or handing over: nothing more starts
				continue
			}
			in.reap()
		case <-in.againC():
			in.forwardAgain()
		case lag := <-w.ready:
			delete(w.starting, lag)
			w.startMore()
		case <-w.stall():
			clear(w.starting) // slow, not stuck: let the next ones go
			w.startMore()
		}
	}
	in.awaitOrphans(sigs)
	if len(in.failed) > 0 {
		lags := make([]string, 0, len(in.failed))
		for l, why := range in.failed {
			lags = append(lags, l+" ("+why+")")
		}
		slices.Sort(lags)
		return 1, fmt.Errorf("init: %d of %d LAGs failed: %s", len(in.failed), len(configs), strings.Join(lags, ", "))
	}
	log.Info("every LAG's shim exited cleanly", "lags", len(configs))
	return 0, nil
}

// initState is Init's loop's; owned by it.
type initState struct {
	log      *slog.Logger
	wrappers map[int]*wrapper // pid -> wrapper, while it runs
	failed   map[string]string
	// done: a stop or a handoff was forwarded; nothing is restarted.
	done      bool
	signalled bool           // an orphan was sent a signal
	forwarded syscall.Signal // the last signal forwarded
	hub       *statefile.Hub // nil: the shims watch on their own
	env       []string       // the wrappers' environment
	shimSlack time.Duration  // the wrappers' timer slack; 0: init's own
	role      proto.Role     // the wrappers', from the environment
	// again: the wrappers the last forwarded signal may have reached
	// before they listened, and when to send it to them again.
	again     map[int]*wrapper
	againTick *time.Timer
}

func (in *initState) start(w *wrapper) {
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}, Env: in.env}
	if in.hub != nil {
		if r, err := in.hub.Subscribe(w.lag, watchedKinds(in.role)...); err != nil {
			in.log.Warn("the LAG's shim watches on its own", "lag", w.lag, "err", err)
		} else {
			defer r.Close() // the child's copy is its own
			attr.Files = append(attr.Files, r)
			attr.Env = append(slices.Clip(in.env), EnvWatchFD+"="+strconv.Itoa(len(attr.Files)-1))
		}
	}
	var p *os.Process
	start := func() (err error) {
		p, err = os.StartProcess(w.argv[0], w.argv, attr)
		return err
	}
	if err := timerslack.Apply(in.shimSlack, start); err != nil {
		in.log.Error("cannot start the LAG's shim", "lag", w.lag, "err", err)
		in.failed[w.lag] = err.Error()
		return
	}
	delete(in.failed, w.lag)
	w.started = time.Now()
	in.wrappers[p.Pid] = w
	in.log.Info("started", "lag", w.lag, "pid", p.Pid, "restarts", len(w.restarts))
	_ = p.Release() // the reaper below waits, not os.Process (and Release clears Pid)
}

// forward passes sig to every wrapper, and to the orphaned teamd of a LAG
// that has none (its shim died): SIGUSR1 makes it stop warm, as its shim
// would have made it.
func (in *initState) forward(sig syscall.Signal) {
	in.done, in.forwarded = true, sig
	in.log.Info("forwarding signal", "signal", sig, "wrappers", len(in.wrappers))
	running := map[string]bool{}
	in.again = map[int]*wrapper{}
	for pid, w := range in.wrappers {
		running[w.lag] = true
		in.signalWrapper(pid, sig)
		if time.Since(w.started) < listenGrace {
			in.again[pid] = w
		}
	}
	if len(in.again) > 0 {
		in.againTick = time.NewTimer(listenGrace)
	}
	for pid, lag := range orphans(in.wrappers) {
		if running[lag] {
			continue // its LAG's shim adopted it, or will
		}
		in.log.Warn("forwarding signal to the orphaned teamd of a dead shim", "signal", sig, "lag", lag, "pid", pid)
		if err := unix.Kill(pid, sig); err == nil {
			in.signalled = true
		}
	}
}

// againC fires when the wrappers forward found just started are due the
// signal again; nil if none are.
func (in *initState) againC() <-chan time.Time {
	if in.againTick == nil {
		return nil
	}
	return in.againTick.C
}

// forwardAgain sends the last forwarded signal again to the wrappers that
// were just started when it was forwarded, if they still run.
func (in *initState) forwardAgain() {
	in.againTick = nil
	for pid, w := range in.again {
		if in.wrappers[pid] != w {
			continue // exited (and reaped): its pid may be another's
		}
		in.log.Info("forwarding signal again to a wrapper that had just started", "signal", in.forwarded, "lag", w.lag, "pid", pid)
		in.signalWrapper(pid, in.forwarded)
	}
	in.again = nil
}

// signalWrapper sends sig to a wrapper; one that has just exited is no
// error.
func (in *initState) signalWrapper(pid int, sig syscall.Signal) {
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		in.log.Error("forwarding signal", "pid", pid, "err", err)
	}
}

// reap collects every exited child; SIGCHLDs coalesce, so it loops. A
// killed wrapper is restarted (see maxRestarts).
func (in *initState) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		w, ours := in.wrappers[pid]
		if !ours {
			continue // an orphan: reaped, nothing more
		}
		delete(in.wrappers, pid)
		code := signame.ExitCode(syscall.WaitStatus(ws))
		switch {
		case code == 0:
			in.log.Info("shim exited", "lag", w.lag, "pid", pid)
			continue
		case code >= 128 && !in.done && w.restartable():
			in.log.Error("shim died; restarting it", "lag", w.lag, "pid", pid, "code", code)
			w.restarts = append(w.restarts, time.Now())
			in.start(w)
			continue
		}
		in.failed[w.lag] = fmt.Sprintf("exit %d", code)
		in.log.Error("shim exited", "lag", w.lag, "pid", pid, "code", code)
		if code >= 128 && in.forwarded != 0 {
			// It died as the signal was forwarded, so its teamd may not
			// have had it: a handoff must still stop the old speaker.
			in.forwardToOrphan(w.lag, in.forwarded)
		}
	}
}

// forwardToOrphan sends sig to lag's orphaned teamd, if it has one.
func (in *initState) forwardToOrphan(lag string, sig syscall.Signal) {
	for pid, l := range orphans(in.wrappers) {
		if l != lag {
			continue
		}
		in.log.Warn("forwarding signal to the orphaned teamd of a shim that died as it was forwarded", "signal", sig, "lag", lag, "pid", pid)
		if err := unix.Kill(pid, sig); err == nil {
			in.signalled = true
		}
	}
}

// restartable reports whether the wrapper may be restarted once more.
func (w *wrapper) restartable() bool {
	w.restarts = slices.DeleteFunc(w.restarts, func(t time.Time) bool { return time.Since(t) > restartWindow })
	return len(w.restarts) < maxRestarts
}

// awaitOrphans waits, bounded, for the orphaned teamds init signalled,
// reaping them.
func (in *initState) awaitOrphans(sigs <-chan os.Signal) {
	if !in.signalled {
		return
	}
	deadline := time.After(orphanWait)
	for len(orphans(nil)) > 0 {
		select {
		case <-sigs:
			in.reap()
		case <-deadline:
			in.log.Warn("orphaned teamds still run; they end with this container", "pids", len(orphans(nil)))
			return
		}
	}
}

// orphans lists this process's children that are not wrappers and run
// teamd for a LAG: teamds whose shim died (they were reparented here).
func orphans(wrappers map[int]*wrapper) map[int]string {
	out := map[int]string{}
	des, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, de := range des {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || wrappers[pid] != nil || parentOf(pid) != self {
			continue
		}
		if lag := teamdFor(pid); lag != "" {
			out[pid] = lag
		}
	}
	return out
}

// parentOf is process pid's parent, from /proc/PID/stat.
func parentOf(pid int) int {
	f, err := procstat.Read(pid)
	if err != nil || len(f) < 2 || f[0] == "Z" {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
