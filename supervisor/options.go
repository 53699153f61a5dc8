package supervisor

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/cgroup"
	"github.com/teamdwarm/teamdwarm/internal/sys/inotify"
)

// Defaults; each is an Options field.
const (
	// DefaultContainer is SONiC's teamd container.
	DefaultContainer = "teamd"
	// BackupSuffix names the old container during the flow (HLD a1).
	BackupSuffix = "_bak"
	// DefaultDir is the host side of the record directory: SONiC mounts
	// /host/warmboot at /var/warmboot in the teamd container.
	DefaultDir = "/host/warmboot/teamdwarm"
	// DefaultReadyTimeout bounds a3. A fast-rate standby is ready within a
	// few seconds of its start; a slow-rate one hears its partner only
	// every 30 s.
	DefaultReadyTimeout = 90 * time.Second
	// DefaultDeadline is the cutover's deadline after b1, for the standbys
	// that get no valid snapshot (they take over by then, or earlier on
	// their own budget). The peer allows 3 s from the last PDU.
	DefaultDeadline = 2500 * time.Millisecond
	// DefaultTakeoverTimeout bounds b2/b3 after b1: the deadline, the
	// shims' 2 s confirmation of the first PDU, and some slack.
	DefaultTakeoverTimeout = 8 * time.Second
	// DefaultExitTimeout bounds the backup's exit after b1 (c1); its shims
	// kill their teamd after 800 ms and exit once the snapshot is written.
	DefaultExitTimeout = 10 * time.Second
	// DefaultHandoverWindow is how many LAGs hand over per fast period
	// (the cutover's Window): 128 LAGs in four waves. Every LAG at once on
	// a switch's two cores took each handoff past its budget (at 96 LAGs,
	// 92 took the deadline path).
	DefaultHandoverWindow = 32
	// DefaultStandbyCPUShares is the new container's CPU shares (docker
	// run --cpu-shares, the least there is) from its start to the cutover.
	// Standing up a switch's standbys takes the CPU for seconds (128 Go
	// shims and teamds); the old container's teamds, which must send a
	// PDU every second meanwhile, then come first. The shares are a
	// cgroup's weight, so they rank the containers whatever the nice
	// values inside them. Where the kernel has it, the new container's
	// cgroup is also marked idle until then (Options.CPUIdle): shares
	// rank it only among its siblings, and a running teamd woken on a CPU
	// that a process outside Docker's cgroup holds still waited, while
	// the other CPU ran the standbys' start-up.
	DefaultStandbyCPUShares = 2
	// DefaultCPUShares is what a container without --cpu-shares gets
	// (cgroup v1's cpu.shares): the new container's shares from the
	// cutover on if the old one had none set. On cgroup v2 dockerd's
	// runtime turns shares into cpu.weight, and depending on its version
	// 1024 may come out below v2's default weight (100).
	DefaultCPUShares = 1024
	// DefaultWaitingEvery is how often a stage that waits on LAGs (a3, b2)
	// names those it still waits for.
	DefaultWaitingEvery = 5 * time.Second
	// DefaultStopTimeout is how long a rolled-back new container gets to
	// stop (its standbys remove their records) before it is killed.
	DefaultStopTimeout = 5 * time.Second
)

// Operation names what a run is for; upgrade and rollback are the same
// flow (HLD: "the process of rollback_docker is the same").
type Operation string

// The operations.
const (
	OpUpgrade  Operation = "upgrade"
	OpRollback Operation = "rollback"
	OpDryRun   Operation = "dry-run"
	// OpRecover finishes or undoes a run that did not end.
	OpRecover Operation = "recover"
)

// Options configure a Supervisor.
type Options struct {
	Container string // DefaultContainer if ""
	Backup    string // Container+BackupSuffix if ""
	// Image is the new container's image, present locally (there is no
	// pull: a switch upgrades from a loaded image).
	Image string
	// Dir is the host path of the record directory, inside the bind
	// mount the containers share.
	Dir             string
	ReadyTimeout    time.Duration
	Deadline        time.Duration
	TakeoverTimeout time.Duration
	ExitTimeout     time.Duration
	StopTimeout     time.Duration
	// WaitingEvery is how often a3 and b2 name the LAGs they still wait
	// for (DefaultWaitingEvery if 0).
	WaitingEvery time.Duration
	// HandoverWindow is how many LAGs hand over per fast period at b1
	// (DefaultHandoverWindow if 0); a run with no more LAGs than that
	// hands every one over in the first.
	HandoverWindow int
	// StandbyCPUShares are the new container's CPU shares until the
	// cutover (DefaultStandbyCPUShares if 0; negative: the old one's
	// throughout). Before the cutover it gets the old container's shares,
	// or DefaultCPUShares if the old one had none set.
	StandbyCPUShares int64
	// Progress, if set, gets every step of the flow as it happens.
	Progress func(Step)
	Logger   *slog.Logger
	// InotifyUsage reads root's inotify use and limits, which the run's
	// watches count against (preflight); inotify.Read of /proc if nil.
	InotifyUsage func() (inotify.Usage, error)
	// CPUIdle marks the cgroup of process pid (the new container's init)
	// idle or not; cgroup.SetIdle if nil. The new container is idle from
	// its start to the cutover if its standbys stand behind
	// (StandbyCPUShares); an error matching cgroup.ErrNoIdle means the
	// kernel cannot, and the shares alone rank it.
	CPUIdle func(pid int, idle bool) error
}

// Step is one line of progress.
type Step struct {
	Stage   Stage
	Message string
	At      time.Time
}

func (o *Options) defaults() error {
	if o.Container == "" {
		o.Container = DefaultContainer
	}
	if o.Backup == "" {
		o.Backup = o.Container + BackupSuffix
	}
	if o.Backup == o.Container {
		return fmt.Errorf("backup container name %q is the container's own", o.Backup)
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	for _, d := range []struct {
		to  *time.Duration
		def time.Duration
	}{{&o.ReadyTimeout, DefaultReadyTimeout}, {&o.Deadline, DefaultDeadline},
		{&o.TakeoverTimeout, DefaultTakeoverTimeout}, {&o.ExitTimeout, DefaultExitTimeout},
		{&o.StopTimeout, DefaultStopTimeout}, {&o.WaitingEvery, DefaultWaitingEvery}} {
		if *d.to == 0 {
			*d.to = d.def
		}
		if *d.to < 0 {
			return fmt.Errorf("negative timeout %v", *d.to)
		}
	}
	if o.HandoverWindow == 0 {
		o.HandoverWindow = DefaultHandoverWindow
	}
	if o.HandoverWindow < 0 {
		return fmt.Errorf("negative handover window %d", o.HandoverWindow)
	}
	if o.StandbyCPUShares == 0 {
		o.StandbyCPUShares = DefaultStandbyCPUShares
	}
	if o.StandbyCPUShares > 0 && o.StandbyCPUShares < 2 {
		return fmt.Errorf("standby CPU shares %d: the least there is is 2 (negative keeps the old container's)", o.StandbyCPUShares)
	}
	if o.Deadline >= o.TakeoverTimeout {
		return fmt.Errorf("deadline %v is not shorter than the takeover timeout %v", o.Deadline, o.TakeoverTimeout)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.InotifyUsage == nil {
		// The containers' shims run as root, whoever runs teamd-warm.
		o.InotifyUsage = func() (inotify.Usage, error) { return inotify.Read("/proc", 0) }
	}
	if o.CPUIdle == nil {
		o.CPUIdle = cgroup.SetIdle
	}
	return nil
}
