package lab

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// SampleEvery is how often the bonding peer's own state is read.
const SampleEvery = 50 * time.Millisecond

// BondState is what Linux bonding says of one 802.3ad bond
// (/proc/net/bonding/<bond>) at one moment.
type BondState struct {
	At        time.Time
	ActiveAgg int // "Active Aggregator Info: Aggregator ID"
	Slaves    map[string]SlaveState
}

// SlaveState is one slave of a bond: its link, its aggregator, its churn
// machine, and the actor and partner oper port states of its last LACPDU
// exchange ("details ... lacp pdu: port state").
type SlaveState struct {
	MII               string // "up" or "down"
	LinkFailures      int
	Aggregator        int
	ActorChurnState   string // none, monitoring, churned
	PartnerChurnState string
	ActorChurned      int
	PartnerChurned    int
	ActorState        proto.State // the bond's own state on this slave
	PartnerState      proto.State // the DUT's state as the bond sees it
}

// ParseBond reads /proc/net/bonding/<bond>'s text.
func ParseBond(text string) (BondState, error) {
	b := BondState{Slaves: map[string]SlaveState{}}
	var cur string
	var s SlaveState
	section := "" // "actor" or "partner" inside a slave's details
	inActive := false
	flush := func() {
		if cur != "" {
			b.Slaves[cur] = s
		}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(v)
		switch {
		case k == "Active Aggregator Info":
			inActive = true
		case k == "Slave Interface":
			flush()
			cur, s, section, inActive = v, SlaveState{}, "", false
		case cur == "" && inActive && k == "Aggregator ID":
			b.ActiveAgg = n
		case cur == "":
		case k == "MII Status":
			s.MII = v
		case k == "Link Failure Count":
			s.LinkFailures = n
		case k == "Aggregator ID":
			s.Aggregator = n
		case k == "Actor Churn State":
			s.ActorChurnState = v
		case k == "Partner Churn State":
			s.PartnerChurnState = v
		case k == "Actor Churned Count":
			s.ActorChurned = n
		case k == "Partner Churned Count":
			s.PartnerChurned = n
		case k == "details actor lacp pdu":
			section = "actor"
		case k == "details partner lacp pdu":
			section = "partner"
		case k == "port state" && section == "actor":
			s.ActorState = proto.State(n)
		case k == "port state" && section == "partner":
			s.PartnerState = proto.State(n)
		}
	}
	flush()
	if len(b.Slaves) == 0 {
		return b, fmt.Errorf("no slave in the bond's state")
	}
	return b, sc.Err()
}

// Sampler reads bonds' states every SampleEvery from inside the PEER
// namespace, on a thread of its own that never leaves it.
type Sampler struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples map[string][]BondState // by bond; guarded by mu
	err     error                  // guarded by mu
}

// Sample starts sampling bonds in namespace ns.
func Sample(ns string, bonds []string) (*Sampler, error) {
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{}), samples: map[string][]BondState{}}
	started := make(chan error, 1)
	go func() {
		defer close(s.done)
		// The thread stays in ns until the goroutine ends: it is never
		// unlocked, so the runtime discards it then.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err == nil {
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
		}
		started <- err
		if err != nil {
			return
		}
		tick := time.NewTicker(SampleEvery)
		defer tick.Stop()
		for {
			for _, bond := range bonds {
				b, err := os.ReadFile("/proc/thread-self/net/bonding/" + bond)
				var st BondState
				if err == nil {
					st, err = ParseBond(string(b))
				}
				st.At = time.Now()
				s.mu.Lock()
				if err != nil && s.err == nil {
					s.err = fmt.Errorf("%s: %w", bond, err)
				}
				if err == nil {
					s.samples[bond] = append(s.samples[bond], st)
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("sampler: enter %s: %w", ns, err)
	}
	return s, nil
}

// Stop ends the sampling.
func (s *Sampler) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Samples returns bond's samples in [from, to].
func (s *Sampler) Samples(bond string, from, to time.Time) []BondState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []BondState
	for _, st := range s.samples[bond] {
		if !st.At.Before(from) && !st.At.After(to) {
			out = append(out, st)
		}
	}
	return out
}

// Last returns bond's latest sample.
func (s *Sampler) Last(bond string) (BondState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.samples[bond]
	if len(ss) == 0 {
		return BondState{}, false
	}
	return ss[len(ss)-1], true
}

// PeerVerdict is what a bond went through in a window, by its own state.
type PeerVerdict struct {
	Bond    string
	Samples int
	// MaxSampleGap is the largest time between two samples: how well the
	// window was watched.
	MaxSampleGap time.Duration
	Problems     []string
}

// Judge says whether bond stayed as it was at the window's first sample:
// the same active aggregator with every slave in it, every slave up, the
// DUT's state in sync, collecting and distributing at every sample, no
// churn and no link failure.
func (s *Sampler) Judge(bond string, from, to time.Time) PeerVerdict {
	v := PeerVerdict{Bond: bond}
	ss := s.Samples(bond, from, to)
	v.Samples = len(ss)
	add := func(format string, args ...any) {
		if len(v.Problems) < 6 {
			v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
		}
	}
	if len(ss) < 2 {
		add("only %d samples of the bond", len(ss))
		return v
	}
	first := ss[0]
	for i, st := range ss {
		if i > 0 {
			v.MaxSampleGap = max(v.MaxSampleGap, st.At.Sub(ss[i-1].At))
		}
		at := st.At.Sub(from).Round(time.Millisecond)
		if st.ActiveAgg != first.ActiveAgg {
			add("+%v: active aggregator %d, was %d", at, st.ActiveAgg, first.ActiveAgg)
		}
		for name, sl := range st.Slaves {
			f := first.Slaves[name]
			switch {
			case sl.MII != "up":
				add("+%v: %s link %s", at, name, sl.MII)
			case sl.Aggregator != st.ActiveAgg:
				add("+%v: %s in aggregator %d, not the active %d", at, name, sl.Aggregator, st.ActiveAgg)
			case !sl.PartnerState.Has(proto.InService):
				add("+%v: %s partner (DUT) state %s: not in sync|collecting|distributing", at, name, sl.PartnerState)
			case sl.ActorChurned != f.ActorChurned || sl.PartnerChurned != f.PartnerChurned || sl.ActorChurnState == "churned" || sl.PartnerChurnState == "churned":
				add("+%v: %s churn: actor %s (%d), partner %s (%d)", at, name, sl.ActorChurnState, sl.ActorChurned, sl.PartnerChurnState, sl.PartnerChurned)
			case sl.LinkFailures != f.LinkFailures:
				add("+%v: %s link failures %d, were %d", at, name, sl.LinkFailures, f.LinkFailures)
			}
		}
	}
	if len(first.Slaves) < 2 {
		add("only %d slave(s)", len(first.Slaves))
	}
	return v
}

// Aggregated reports whether every slave of st is up, in the active
// aggregator, and sees the DUT in sync, collecting and distributing.
func (st BondState) Aggregated() bool {
	if st.ActiveAgg == 0 || len(st.Slaves) == 0 {
		return false
	}
	for _, sl := range st.Slaves {
		if sl.MII != "up" || sl.Aggregator != st.ActiveAgg || !sl.PartnerState.Has(proto.InService) || !sl.ActorState.Has(proto.InService) {
			return false
		}
	}
	return true
}
