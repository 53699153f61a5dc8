package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamdshim"
)

// How a handoff ends the old speaker.
type stopMode int

const (
	// byShim: the supervisor's way, SIGUSR1 to the old shim, which stops
	// its teamd warm and writes the snapshot.
	byShim stopMode = iota
	// shimDies: the old shim is killed before it writes the snapshot,
	// and its teamd is stopped warm all the same (as the shim would have
	// begun to): the standby takes over on its deadline.
	shimDies
	// noShim: the old teamds run without shims (e.daemons, as SONiC's
	// teammgrd starts them) and are stopped as teamd-warm stops them in
	// a first upgrade: shimless.HandOver, then the snapshot published.
	noShim
)

// handoffBounds bound a handoff's steps in the VM.
const (
	standbyWithin  = 40 * time.Second
	takeoverWithin = 10 * time.Second
	// oldWithin bounds an old teamd's warm stop (SONiC's warm stop
	// takes well under a second in the VM).
	oldWithin = 10 * time.Second
	// after is how long the peer is watched past the takeovers: longer
	// than its 3 s expiry, so that a member the handoff broke shows.
	after = 3500 * time.Millisecond
	// twoSpeakers: past the takeover, one teamd sends a PDU per fast
	// period; a second speaker shows as two PDUs closer than this.
	twoSpeakers = 400 * time.Millisecond
)

// Handoff is one handoff's figures, as results.json and BENCHMARKS.md
// show them.
type Handoff struct {
	From         string    `json:"from"`
	To           string    `json:"to"`
	Path         []string  `json:"path"`           // per LAG
	TakeoverMS   []float64 `json:"takeover_ms"`    // per LAG: cutover -> first PDU of the new teamd
	LargestGapMS float64   `json:"largest_gap_ms"` // between two PDUs of a member at the peer
	// MemberGapMS is each member's largest gap (DUT port name).
	MemberGapMS   map[string]float64 `json:"member_gap_ms"`
	KernelChanged []string           `json:"kernel_changed"`
	// OldGoneMS is, per LAG of a deadline handoff, how long the old
	// teamd took from the warm-stop signal to its exit.
	OldGoneMS []float64 `json:"old_gone_ms,omitempty"`
	// TakeoverWrites is, per LAG, how many writes the new teamd made at
	// its takeover because the kernel differed from what it wanted.
	TakeoverWrites []int       `json:"takeover_writes"`
	Traffic        []Direction `json:"traffic"`
	took           time.Duration
}

// handoff hands every LAG from the shims olds (of epoch) to standbys of
// td at epoch+1, each in a mount namespace of its own, as two teamd
// containers would: the standbys start passive and announce themselves,
// the cutover record is written, the old speakers are stopped (by mode),
// and every LAG must be taken over. The window from the cutover to after
// past the last takeover is judged: the bonding peer's state at every
// sample, the traffic (not one packet lost), the kernel's LAG (unchanged),
// the PDUs at the peer (no silence near the expiry, never two speakers).
func (e *Env) handoff(ctx context.Context, olds []*Proc, epoch uint64, td Teamd, mode stopMode) ([]*Proc, Handoff, error) {
	var h Handoff
	var news []*Proc
	for _, l := range e.Topo.LAGs {
		p, err := e.StartShim(l, td, ShimOpts{Records: e.Records(), Dump: e.DumpDir(), MountNS: true,
			Args: []string{"--role", "standby", "--epoch", strconv.FormatUint(epoch+1, 10)}})
		if err != nil {
			return nil, h, err
		}
		news = append(news, p)
	}
	for i, l := range e.Topo.LAGs {
		if _, err := AwaitRecord(ctx, e.Records(), l.Name, proto.KindStandby, standbyWithin, func(r proto.Record) bool {
			return r.RecordEpoch() == epoch+1
		}); err != nil {
			return news, h, fmt.Errorf("%s's standby (running %v): %w", l.Name, news[i].Running(), err)
		}
	}
	before := map[string]*proto.KernelLAG{}
	for _, l := range e.Topo.LAGs {
		k, err := e.Kernel(l)
		if err != nil {
			return news, h, err
		}
		before[l.Name] = k
	}
	// The old teamds, known before the cutover: a stop must not wait
	// for a process to start in the VM.
	var oldPIDs []int
	if mode == shimDies {
		for i, old := range olds {
			pid, err := TeamdPIDIn(ctx, old.Pid(), e.Topo.LAGs[i].Name)
			if err != nil {
				return news, h, fmt.Errorf("%s's teamd: %w", old.Name, err)
			}
			oldPIDs = append(oldPIDs, pid)
		}
	}
	e.Traffic.Reset()
	from := time.Now()
	cut, err := e.writeCutover(epoch)
	if err != nil {
		return news, h, err
	}
	var stopped []oldTeamd
	if mode == noShim {
		if err := e.stopShimless(ctx); err != nil {
			return news, h, err
		}
	}
	for i, old := range olds {
		switch mode {
		case byShim:
			err = old.Signal(syscall.SIGUSR1)
		case shimDies:
			// The old shim dies after it has told its teamd to stop warm
			// and before it writes the snapshot: the standby takes over
			// at the deadline. The shim alone is killed; its teamd lives
			// on until its warm stop ends.
			if err = syscall.Kill(oldPIDs[i], syscall.SIGUSR1); err == nil {
				stopped = append(stopped, awaitExit(ctx, e.Topo.LAGs[i].Name, oldPIDs[i], oldWithin))
				err = syscall.Kill(old.Pid(), syscall.SIGKILL)
			}
		}
		if err != nil {
			return news, h, fmt.Errorf("stopping %s: %w", old.Name, err)
		}
	}
	var lastTakeover time.Time
	took := map[string]time.Time{} // LAG -> the new teamd's first PDU
	var errs []error
	for _, l := range e.Topo.LAGs {
		rec, err := AwaitRecord(ctx, e.Records(), l.Name, proto.KindActive, takeoverWithin, func(r proto.Record) bool {
			return r.RecordEpoch() == epoch+1
		})
		if err != nil {
			return news, h, err
		}
		a := rec.(*proto.Active)
		h.Path = append(h.Path, string(a.Path))
		if a.Timings.Confirmed == 0 {
			errs = append(errs, fmt.Errorf("%s: the new teamd was not seen transmitting (%s)", l.Name, a.Note))
		} else {
			h.TakeoverMS = append(h.TakeoverMS, float64(a.Timings.Confirmed-cut.StartedMono)/1e6)
			t := time.Now().Add(-monoclock.Since(a.Timings.Confirmed))
			took[l.Name] = t
			if t.After(lastTakeover) {
				lastTakeover = t
			}
		}
		if want := map[stopMode]proto.Path{byShim: proto.PathSnapshot, shimDies: proto.PathDeadline, noShim: proto.PathSnapshot}[mode]; a.Path != want {
			errs = append(errs, fmt.Errorf("%s: taken over by path %s, want %s (%s)", l.Name, a.Path, want, a.Note))
		}
	}
	if mode == byShim {
		for _, old := range olds {
			if code, err := old.Wait(10 * time.Second); err != nil || code != 0 {
				errs = append(errs, fmt.Errorf("%s after the handoff: exit %d, %v", old.Name, code, err))
			}
		}
	}
	time.Sleep(after) // the peer's expiry would show by then
	to := time.Now()
	// An old teamd stopped by the lab must be gone before the takeover,
	// or the wire shows two speakers for a reason of the lab's own.
	for _, o := range stopped {
		r := <-o.result
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s's old teamd (pid %d) after its warm stop: %w", o.lag, o.pid, r.err))
			continue
		}
		if t, ok := took[o.lag]; ok && r.at.After(t) {
			errs = append(errs, fmt.Errorf("%s's old teamd exited %v after the new one transmitted: the lab let two speak", o.lag, r.at.Sub(t).Round(time.Millisecond)))
		}
		h.OldGoneMS = append(h.OldGoneMS, float64(r.at.Sub(o.signalled).Microseconds())/1000)
	}
	// What the new teamd had to write to the kernel at its takeover
	// (its own log line; a teamd without the line writes nothing here).
	for _, p := range news {
		var made, had int
		if _, err := fmt.Sscanf(after1(p.Log.String(), "Takeover: "), "%d writes made where the kernel differed, %d it had already", &made, &had); err == nil {
			h.TakeoverWrites = append(h.TakeoverWrites, made)
		}
	}
	// The peer, by its own state; the traffic; the kernel.
	errs = append(errs, e.judge(from, to, e.Topo.LAGs))
	h.Traffic = e.Traffic.Count()
	if _, err := Lost(h.Traffic); err != nil {
		errs = append(errs, fmt.Errorf("%w\ndrops the kernel counted: %s", err, drops(ctx)))
	}
	for _, l := range e.Topo.LAGs {
		k, err := e.Kernel(l)
		if err != nil {
			return news, h, err
		}
		if d := before[l.Name].Diff(k); len(d) > 0 {
			h.KernelChanged = append(h.KernelChanged, fmt.Sprintf("%s: %v", l.Name, d))
			errs = append(errs, fmt.Errorf("%s: the kernel's LAG changed: %v", l.Name, d))
		}
	}
	// The wire: the largest gap, and never two speakers.
	for _, v := range e.wire(from.Add(-2*time.Second), to, e.Topo.LAGs) {
		gap := float64(v.MaxGap.Microseconds()) / 1000
		h.LargestGapMS = max(h.LargestGapMS, gap)
		if h.MemberGapMS == nil {
			h.MemberGapMS = map[string]float64{}
		}
		h.MemberGapMS[v.Member] = gap
		if v.OutOfSync > 0 || v.PDUs == 0 {
			errs = append(errs, fmt.Errorf("%s at the peer: %d PDUs, %d without sync|collecting|distributing", v.Member, v.PDUs, v.OutOfSync))
		}
		if v.TwoSpeakers != "" {
			errs = append(errs, fmt.Errorf("%s at the peer: two speakers: %s (PDUs at %s)", v.Member, v.TwoSpeakers,
				e.pduTimes(v.Member, from.Add(-2*time.Second), to, lastTakeover)))
		}
	}
	// Stricter once the takeover has settled: one speaker, so no two PDUs
	// closer than twoSpeakers.
	for _, l := range e.Topo.LAGs {
		for _, m := range l.Members {
			ps := e.Wire.PDUs(m.Peer, lastTakeover.Add(1500*time.Millisecond), to)
			for i := 1; i < len(ps); i++ {
				if d := ps[i].At.Sub(ps[i-1].At); d < twoSpeakers {
					errs = append(errs, fmt.Errorf("%s: two PDUs %v apart at +%v after the takeover: two speakers (PDUs at %s)",
						m.DUT, d.Round(time.Millisecond), ps[i].At.Sub(lastTakeover).Round(time.Millisecond),
						e.pduTimes(m.DUT, lastTakeover.Add(-2*time.Second), to, lastTakeover)))
					break
				}
			}
		}
	}
	h.took = time.Since(from)
	return news, h, errors.Join(errs...)
}

// pduTimes lists when the peer received member's PDUs between from and to,
// relative to at: what a two-speakers verdict is read against.
func (e *Env) pduTimes(member string, from, to, at time.Time) string {
	var seq []string
	for _, l := range e.Topo.LAGs {
		for _, m := range l.Members {
			if m.DUT != member {
				continue
			}
			for _, p := range e.Wire.PDUs(m.Peer, from, to) {
				d := p.At.Sub(at).Round(time.Millisecond)
				if d >= 0 {
					seq = append(seq, "+"+d.String())
				} else {
					seq = append(seq, d.String())
				}
			}
		}
	}
	return strings.Join(seq, " ")
}

// writeCutover writes the supervisor's cutover record from epoch to
// epoch+1, for every LAG, with its deadline.
func (e *Env) writeCutover(epoch uint64) (*proto.Cutover, error) {
	d, err := statefile.OpenDir(e.Records())
	if err != nil {
		return nil, err
	}
	now := monoclock.Now()
	host, _ := os.Hostname()
	c := &proto.Cutover{Schema: proto.SchemaVersion, FromEpoch: epoch, ToEpoch: epoch + 1,
		Writer: proto.Process{Hostname: host, PID: os.Getpid()}, StartedMono: now, Started: time.Now(),
		DeadlineMono: now + int64(2500*time.Millisecond)}
	for _, l := range e.Topo.LAGs {
		c.LAGs = append(c.LAGs, l.Name)
	}
	_, err = d.Write(c)
	return c, err
}

// handoffFigures records one handoff's figures under name.
func (e *Env) handoffFigures(name string, h Handoff) {
	sent, lost := 0, 0
	for _, d := range h.Traffic {
		sent, lost = sent+d.Sent, lost+d.Lost
	}
	kernel := "unchanged"
	if len(h.KernelChanged) > 0 {
		kernel = "changed"
	}
	old := ""
	if len(h.OldGoneMS) > 0 {
		old = fmt.Sprintf(", old teamd gone %v ms after its warm-stop signal", roundMS(h.OldGoneMS))
	}
	e.Figure(name, h, "%s: paths %v%s, cutover to first PDU %v ms, largest gap at the peer %.0f ms, kernel %s (takeover writes %v), %d packets, %d lost",
		name, h.Path, old, roundMS(h.TakeoverMS), h.LargestGapMS, kernel, h.TakeoverWrites, sent, lost)
}

// oldTeamd is an old teamd the lab itself told to stop, and when it
// exited.
type oldTeamd struct {
	lag       string
	pid       int
	signalled time.Time
	result    chan exited
}

type exited struct {
	at  time.Time
	err error
}

// awaitExit watches, from now, for pid's exit.
func awaitExit(ctx context.Context, lag string, pid int, timeout time.Duration) oldTeamd {
	o := oldTeamd{lag: lag, pid: pid, signalled: time.Now(), result: make(chan exited, 1)}
	go func() {
		at, err := AwaitGone(ctx, pid, timeout)
		o.result <- exited{at, err}
	}()
	return o
}

// after1 is what follows the first marker in s, "" if none.
func after1(s, marker string) string {
	if i := strings.Index(s, marker); i >= 0 {
		return s[i+len(marker):]
	}
	return ""
}

func roundMS(ms []float64) []int {
	out := make([]int, len(ms))
	for i, m := range ms {
		out[i] = int(m + 0.5)
	}
	return out
}

// startSONiC starts l's teamd td as SONiC's teammgrd does, with no shim:
// its config on the command line, daemonized (-d), its pid file and socket
// in the compiled-in run directory, its dump files in -L. It returns once
// teamd has daemonized.
func (e *Env) startSONiC(l LAG, td Teamd) error {
	conf, err := e.Topo.TeamdConfig(l)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	p, err := e.start(l.Name+" "+td.Name+" (no shim)", "ip", "netns", "exec", DUT, td.Program, "-r", "-t", l.Name, "-c", string(b), "-L", e.DumpDir(), "-g", "-d")
	if err != nil {
		return err
	}
	if code, err := p.Wait(activeWithin); err != nil || code != 0 {
		return fmt.Errorf("%s: teamd -d exited %d (%v): its log:\n%s", l.Name, code, err, tail(p.Log.String(), 20))
	}
	pid, err := TeamdPID(l.Name)
	if err != nil {
		return fmt.Errorf("%s: teamd's pid file: %w", l.Name, err)
	}
	t, err := shimless.Lookup(pid)
	if err != nil {
		return err
	}
	e.daemons = append(e.daemons, t)
	return nil
}

// stopShimless is teamd-warm's b1 for teamds without shims: each stopped
// warm by PID, its snapshot written once it is gone.
func (e *Env) stopShimless(ctx context.Context) error {
	d, err := statefile.OpenDir(e.Records())
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	for _, t := range e.daemons {
		digest, err := teamdshim.ConfigDigest([]byte(t.Config))
		if err != nil {
			return err
		}
		snap, how, err := t.HandOver(ctx, shimless.HandOver{Socket: teamd.SocketPath("", t.LAG), DumpDir: t.DumpDir,
			Epoch: 1, Digest: digest, Teamd: &proto.TeamdInfo{Program: t.Program, Profile: string(teamd.ProfileSONiC)},
			Writer: proto.Process{Hostname: host, PID: os.Getpid()}, StopTimeout: teamdshim.DefaultStopTimeout})
		if err != nil {
			return err
		}
		if snap == nil {
			return fmt.Errorf("%s: the old teamd had exited before its warm stop", t.LAG)
		}
		if _, err := d.Publish(snap); err != nil {
			return err
		}
		e.Figure("old_stop_"+t.LAG, how, "%s: %s", t.LAG, how)
	}
	return nil
}

// 7a. The first upgrade of a SONiC switch: SONiC's teamd, unchanged and
// with no shim, started as teammgrd starts it, hands every LAG over to
// teamdwarm's teamd under the shim, the old teamds stopped as teamd-warm
// stops them (by PID, the snapshot written on their behalf).
func firstUpgradeSONiC(ctx context.Context, e *Env) error {
	start := time.Now()
	for _, l := range e.Topo.LAGs {
		if err := e.startSONiC(l, e.Teamds["sonic"]); err != nil {
			return err
		}
	}
	if err := e.settle(ctx, start); err != nil {
		return err
	}
	_, h, err := e.handoff(ctx, nil, 1, e.Teamds["hld"], noShim)
	h.From, h.To = "sonic (no shim)", "hld"
	e.handoffFigures("sonic-no-shim->hld", h)
	return err
}

// 7. The upgrade a SONiC switch needs: SONiC's teamd, unchanged, hands
// every LAG over to teamdwarm's teamd, started passive beside it.
func handoffSONiCToHLD(ctx context.Context, e *Env) error {
	olds, err := e.bringUp(ctx, e.Teamds["sonic"], ShimOpts{MountNS: true})
	if err != nil {
		return err
	}
	_, h, err := e.handoff(ctx, olds, 1, e.Teamds["hld"], byShim)
	h.From, h.To = "sonic", "hld"
	e.handoffFigures("sonic->hld", h)
	return err
}

// 8. teamdwarm's teamd to teamdwarm's teamd, five times, upgrade and
// rollback directions alike.
func handoffHLDFiveTimes(ctx context.Context, e *Env) error {
	hld := e.Teamds["hld"]
	olds, err := e.bringUp(ctx, hld, ShimOpts{MountNS: true})
	if err != nil {
		return err
	}
	for i := range 5 {
		news, h, err := e.handoff(ctx, olds, uint64(i+1), hld, byShim)
		h.From, h.To = "hld", "hld"
		e.handoffFigures(fmt.Sprintf("handoff %d", i+1), h)
		if err != nil {
			return fmt.Errorf("handoff %d (epoch %d to %d): %w", i+1, i+1, i+2, err)
		}
		olds = news
	}
	return nil
}

// 9. The deadline path: the old shim dies before it writes the snapshot
// (its teamd stops warm all the same); the standbys take over on their
// own at the deadline. Still no lost packet, no churn, never two
// speakers.
func handoffDeadline(ctx context.Context, e *Env) error {
	olds, err := e.bringUp(ctx, e.Teamds["hld"], ShimOpts{MountNS: true})
	if err != nil {
		return err
	}
	_, h, err := e.handoff(ctx, olds, 1, e.Teamds["hld"], shimDies)
	h.From, h.To = "hld", "hld"
	e.handoffFigures("deadline", h)
	return err
}
