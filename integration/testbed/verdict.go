package testbed

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// Window is a stretch of time to judge; Mark starts one.
type Window struct {
	From      time.Time
	logOffset int64
	stats     map[string]Stats // by peer interface, at From
}

// Mark starts a window now.
func (b *Bed) Mark(ctx context.Context) (Window, error) {
	w := Window{From: time.Now(), logOffset: b.ovs.LogOffset(), stats: map[string]Stats{}}
	for _, l := range b.LAGs {
		st, err := b.ovs.ShowStats(ctx, l.Bond)
		if err != nil {
			return w, err
		}
		for k, v := range st {
			w.stats[k] = v
		}
	}
	return w, nil
}

// MemberVerdict is what the peer saw of one member during a window.
type MemberVerdict struct {
	LAG    string `json:"lag"`
	Member string `json:"member"` // DUT side
	Peer   string `json:"peer"`
	PDUs   int    `json:"pdus"`
	// MaxGap is the largest time between two PDUs from the DUT (from the
	// window's start to the first PDU, and from the last to the end, too).
	MaxGap     time.Duration `json:"max_gap_ns"`
	MaxGapEnd  time.Time     `json:"max_gap_end"`
	Malformed  int           `json:"malformed"`
	OutOfSync  int           `json:"out_of_sync"`     // PDUs lacking Sync/Collecting/Distributing once distributing
	IdentityCh int           `json:"identity_change"` // actor system/key/port/priorities changed
	// TwoSpeakers says why the PDUs' timing shows two speakers for the
	// member (proto.Speakers), "" if it does not.
	TwoSpeakers string `json:"two_speakers,omitempty"`
	// OVSEvents are the vswitchd log lines about this member going down,
	// being disabled or expiring.
	OVSEvents      []string `json:"ovs_events"`
	ExpiredDelta   int      `json:"expired_delta"`
	DefaultedDelta int      `json:"defaulted_delta"`
	FinalStatus    string   `json:"final_status"`
	FinalEnabled   bool     `json:"final_enabled"`
	Problems       []string `json:"problems"`
}

// Verdict is the whole bed's.
type Verdict struct {
	From    time.Time       `json:"from"`
	To      time.Time       `json:"to"`
	Members []MemberVerdict `json:"members"`
}

// Clean reports whether no member had any problem.
func (v Verdict) Clean() bool {
	for _, m := range v.Members {
		if len(m.Problems) > 0 {
			return false
		}
	}
	return true
}

// MaxGap is the largest gap on any member.
func (v Verdict) MaxGap() time.Duration {
	var g time.Duration
	for _, m := range v.Members {
		g = max(g, m.MaxGap)
	}
	return g
}

// GapLimit is the largest gap a fast-mode peer tolerates without noticing:
// well under its 3 s expiry, close to the 1 s period plus scheduling.
const GapLimit = 1500 * time.Millisecond

// Judge closes the window now and says what the peer saw.
func (b *Bed) Judge(ctx context.Context, w Window) (Verdict, error) {
	to := time.Now()
	v := Verdict{From: w.From, To: to}
	logs, err := b.ovs.LogSince(w.logOffset)
	if err != nil {
		return v, err
	}
	for _, l := range b.LAGs {
		stats, err := b.ovs.ShowStats(ctx, l.Bond)
		if err != nil {
			return v, err
		}
		status, err := b.ovs.LACPShow(ctx, l.Bond)
		if err != nil {
			return v, err
		}
		for _, m := range l.Members {
			prior, _ := b.observer.Before(m.Peer, w.From)
			mv := JudgeWire(m, prior, b.observer.PDUs(m.Peer, w.From, to), w.From, to)
			for _, line := range logs {
				if mentions(line, m.Peer) && isTrouble(line) {
					mv.OVSEvents = append(mv.OVSEvents, line)
				}
			}
			before, after := w.stats[m.Peer], stats[m.Peer]
			mv.ExpiredDelta = after.Expired - before.Expired
			mv.DefaultedDelta = after.Defaulted - before.Defaulted
			if s := status[m.Peer]; s != nil {
				mv.FinalStatus, mv.FinalEnabled = s.Status, s.Enabled
			}
			mv.problems()
			v.Members = append(v.Members, mv)
		}
	}
	return v, nil
}

func mentions(line, member string) bool {
	return strings.Contains(line, "member "+member+":") || strings.Contains(line, " "+member+":") ||
		strings.HasSuffix(line, " "+member)
}

// isTrouble picks the OVS log lines that mean the peer noticed something.
func isTrouble(line string) bool {
	for _, s := range []string{"link state down", ": disabled", "expired", "defaulted", "Partner", "partner"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// JudgeWire looks at one member's PDUs; prior is the last PDU before the
// window (zero if none), which says whether the member was already in
// service when the window opened.
func JudgeWire(m Member, prior PDU, pdus []PDU, from, to time.Time) MemberVerdict {
	mv := MemberVerdict{LAG: m.LAG, Member: m.DUT, Peer: m.Peer}
	prev := from
	var first *proto.Info
	var arrivals []time.Time
	distributing := prior.PDU.Actor.State.Has(proto.InService)
	if distributing {
		first = &prior.PDU.Actor
	}
	for _, p := range pdus {
		if p.Err != nil {
			mv.Malformed++
			continue
		}
		mv.PDUs++
		arrivals = append(arrivals, p.At)
		if gap := p.At.Sub(prev); gap > mv.MaxGap {
			mv.MaxGap, mv.MaxGapEnd = gap, p.At
		}
		prev = p.At
		a := p.PDU.Actor
		if first == nil {
			first = &a
		} else if !first.SameIdentity(a) {
			mv.IdentityCh++
		}
		if a.State.Has(proto.InService) {
			distributing = true
		} else if distributing {
			mv.OutOfSync++ // a replacement that starts without state shows up here
		}
	}
	if gap := to.Sub(prev); gap > mv.MaxGap {
		mv.MaxGap, mv.MaxGapEnd = gap, to
	}
	if two, why := proto.Speakers(arrivals, FastPeriod); two {
		mv.TwoSpeakers = why
	}
	return mv
}

// FastPeriod is the period the bed's peers ask for (lacp-time fast).
const FastPeriod = time.Second

func (mv *MemberVerdict) problems() {
	add := func(format string, args ...any) { mv.Problems = append(mv.Problems, fmt.Sprintf(format, args...)) }
	if mv.PDUs == 0 {
		add("no PDU from the DUT")
	}
	if mv.MaxGap > GapLimit {
		add("largest gap %v exceeds %v", mv.MaxGap.Round(time.Millisecond), GapLimit)
	}
	if mv.OutOfSync > 0 {
		add("%d PDU(s) without sync|collecting|distributing", mv.OutOfSync)
	}
	if mv.IdentityCh > 0 {
		add("actor identity changed %d time(s)", mv.IdentityCh)
	}
	if mv.TwoSpeakers != "" {
		add("two speakers: %s", mv.TwoSpeakers)
	}
	if mv.ExpiredDelta > 0 {
		add("peer expired the member %d time(s)", mv.ExpiredDelta)
	}
	if mv.DefaultedDelta > 0 {
		add("peer defaulted the member %d time(s)", mv.DefaultedDelta)
	}
	if len(mv.OVSEvents) > 0 {
		add("peer logged %d event(s), first: %s", len(mv.OVSEvents), mv.OVSEvents[0])
	}
	if !strings.HasPrefix(mv.FinalStatus, "current") || !mv.FinalEnabled {
		add("peer's final status %q, enabled=%v", mv.FinalStatus, mv.FinalEnabled)
	}
}

// WriteTable prints the verdict for humans, one line per member.
func (v Verdict) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAG\tMEMBER\tPDUS\tMAX GAP\tEXPIRED\tOUT OF SYNC\tPEER STATUS\tRESULT")
	for _, m := range v.Members {
		res := "ok"
		if len(m.Problems) > 0 {
			res = "FAIL: " + strings.Join(m.Problems, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%d\t%d\t%s\t%s\n", m.LAG, m.Member, m.PDUs, m.MaxGap.Round(time.Millisecond),
			m.ExpiredDelta, m.OutOfSync, m.FinalStatus, res)
	}
	return tw.Flush()
}
