package teamdshim

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// Defaults; each is an Options field.
const (
	// DefaultDir is where the records live in a SONiC teamd container,
	// beside teamd's own dump directory on the /host/warmboot bind mount.
	DefaultDir = "/var/warmboot/teamdwarm"
	// DefaultStopTimeout bounds the old teamd's exit after SIGUSR1. Its
	// last PDU went out when it was told to stop; a teamd that has not
	// exited within this is killed, so that its snapshot still lands
	// before the standby's budget is spent.
	DefaultStopTimeout = 800 * time.Millisecond
	// DefaultBudget is how long after the cutover starts a standby waits
	// for a valid snapshot before it takes over on its own. The peer
	// allows 3 s from the last PDU, which may be up to 1 s older than the
	// cutover if the old teamd sent no parting PDU; 1.2 s keeps even that
	// gap near 2 s, and a deadline takeover after a parting PDU close to
	// one fast period.
	DefaultBudget = 1200 * time.Millisecond
	// DefaultConfirmTimeout bounds the wait for the new teamd's first PDU
	// on every member after the takeover signal.
	DefaultConfirmTimeout = 2 * time.Second
)

// Options configure a Shim.
type Options struct {
	// Teamd is teamd's command line, program first. A -d in it is the
	// shim's business: teamd itself always runs in the foreground.
	Teamd []string
	Role  proto.Role
	// Epoch is this shim's epoch; 0 means: for an active shim, the epoch
	// of the LAG's current .active record, or 1; a standby needs one.
	Epoch          uint64
	Dir            string         // record directory; DefaultDir if ""
	RunDir         string         // teamd's run directory; teamd.DefaultRunDir if ""
	TakeoverSignal syscall.Signal // sent to a passive teamd to take over; teamd.TakeoverSignal if 0
	// TeamdProfile, if set, is what the wrapped teamd is declared to be;
	// the shim refuses to run one its probe finds to be another.
	TeamdProfile   teamd.Profile
	StopTimeout    time.Duration // DefaultStopTimeout if 0
	Budget         time.Duration // DefaultBudget if 0
	ConfirmTimeout time.Duration // DefaultConfirmTimeout if 0
	Container      string        // written into records; the host name if ""
	Logger         *slog.Logger
	// Ready, if set, is called once teamd's control socket answers: the
	// moment teamd -d would have returned to its caller.
	Ready func()
	// Watch, if set, is this shim's subscription to its init's shared
	// watch of Dir (SharedWatch); the shim watches Dir on its own if nil.
	Watch *os.File
	// TeamdTimerSlack, if set, is the timer slack teamd starts with
	// (TeamdTimerSlackFromInit); otherwise teamd gets the shim's.
	TeamdTimerSlack time.Duration
}

func (o *Options) defaults() {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.RunDir == "" {
		o.RunDir = teamd.DefaultRunDir
	}
	if o.TakeoverSignal == 0 {
		o.TakeoverSignal = teamd.TakeoverSignal
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.Budget == 0 {
		o.Budget = DefaultBudget
	}
	if o.ConfirmTimeout == 0 {
		o.ConfirmTimeout = DefaultConfirmTimeout
	}
	if o.Container == "" {
		o.Container, _ = os.Hostname()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.Role == "" {
		o.Role = proto.RoleActive
	}
}

// FromEnv fills the fields the environment sets (see the Env constants);
// fields already set win. Errors name the variable.
func (o *Options) FromEnv(getenv func(string) string) error {
	if v := getenv(proto.EnvRole); v != "" && o.Role == "" {
		switch r := proto.Role(v); r {
		case proto.RoleActive, proto.RoleStandby:
			o.Role = r
		default:
			return fmt.Errorf("%s: %q, want active or standby", proto.EnvRole, v)
		}
	}
	if v := getenv(proto.EnvEpoch); v != "" && o.Epoch == 0 {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%s: %q, want a number from 1", proto.EnvEpoch, v)
		}
		o.Epoch = n
	}
	if v := getenv(proto.EnvTakeoverSignal); v != "" && o.TakeoverSignal == 0 {
		sig, err := signame.Parse(v)
		if err == nil {
			err = teamd.CheckTakeoverSignal(sig)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", proto.EnvTakeoverSignal, err)
		}
		o.TakeoverSignal = sig
	}
	if v := getenv(proto.EnvTeamdProfile); v != "" && o.TeamdProfile == "" {
		if p := teamd.Profile(v); !p.Valid() {
			return fmt.Errorf("%s: %q, want stock, sonic or hld", proto.EnvTeamdProfile, v)
		}
		o.TeamdProfile = teamd.Profile(v)
	}
	for _, d := range []struct {
		env string
		to  *time.Duration
	}{{proto.EnvBudget, &o.Budget}, {proto.EnvStopTimeout, &o.StopTimeout}} {
		if v := getenv(d.env); v != "" && *d.to == 0 {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				return fmt.Errorf("%s: %q, want a duration such as 1200ms", d.env, v)
			}
			*d.to = t
		}
	}
	for _, s := range []struct {
		env string
		to  *string
	}{{proto.EnvDir, &o.Dir}, {proto.EnvRunDir, &o.RunDir}, {proto.EnvContainer, &o.Container}} {
		if v := getenv(s.env); v != "" && *s.to == "" {
			*s.to = v
		}
	}
	return nil
}
