package teamdsim

import (
	"slices"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// The lacp runner's timings (libteam teamd_runner_lacp.c).
const (
	periodShort = 1 * time.Second  // LACP_PERIODIC_SHORT
	periodLong  = 30 * time.Second // LACP_PERIODIC_LONG
	timeoutMul  = 3                // LACP_PERIODIC_MUL
	maxTxPerSec = 3                // 802.1AX: at most 3 LACPDUs per fast periodic time
)

// Port states, as teamd names them in StateDump.
const (
	stateDisabled  = "disabled"
	stateCurrent   = "current"
	stateExpired   = "expired"
	stateDefaulted = "defaulted"
)

// port is one member under the lacp runner. All fields are owned by the
// daemon's state goroutine.
type port struct {
	name    string
	ifindex int // the kernel's, as teamd's StateDump shows it
	number  int // the LACP port number: the ifindex, or SONiC's from the name
	mac     proto.MAC
	cfg     PortConfig

	state     string
	partner   proto.Info
	lastRx    []byte    // last frame received from the partner (for the dump file)
	rxExpires time.Time // current -> expired -> defaulted
	nextTx    time.Time
	ntt       bool        // need to transmit now
	txTimes   []time.Time // sends within the last second, for the rate limit
	lastActor proto.Info  // actor info last computed, to notice changes

	selected bool
	aggID    int
}

// lag is the lacp runner of one team device.
type lag struct {
	cfg   Config
	ports map[string]*port
}

func (l *lag) sortedPorts() []*port {
	ps := make([]*port, 0, len(l.ports))
	for _, p := range l.ports {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *port) int { return a.ifindex - b.ifindex })
	return ps
}

func (l *lag) rxTimeout() time.Duration {
	if l.cfg.Runner.FastRate {
		return timeoutMul * periodShort
	}
	return timeoutMul * periodLong
}

// actor is what p advertises about itself (teamd lacp_port_actor_update).
func (l *lag) actor(p *port) proto.Info {
	var s proto.State
	if l.cfg.Runner.Active {
		s |= proto.StateActivity
	}
	if l.cfg.Runner.FastRate {
		s |= proto.StateTimeout
	}
	if len(l.ports) > 0 {
		s |= proto.StateAggregation
	}
	if p.selected {
		s |= proto.StateSync
		if p.partner.State.Has(proto.StateSync) {
			s |= proto.StateCollecting | proto.StateDistributing
		}
	}
	switch p.state {
	case stateExpired:
		s |= proto.StateExpired
	case stateDefaulted:
		s |= proto.StateDefaulted
	}
	return proto.Info{
		SystemPriority: l.cfg.Runner.SysPrio,
		System:         l.cfg.HWAddr,
		Key:            p.cfg.LACPKey,
		PortPriority:   p.cfg.LACPPrio,
		Port:           uint16(p.number),
		State:          s,
	}
}

// add starts a port as teamd does: no partner yet, expired, transmit now.
func (l *lag) add(p *port, now time.Time) {
	p.state = stateExpired
	p.partner = proto.Info{State: proto.StateTimeout}
	p.rxExpires = now.Add(l.rxTimeout())
	p.ntt = true
	l.ports[p.name] = p
	l.reselect()
}

// receive processes a LACPDU from the partner.
func (l *lag) receive(p *port, pdu proto.LACPDU, frame []byte, now time.Time) {
	p.partner = pdu.Actor
	p.state = stateCurrent
	p.rxExpires = now.Add(l.rxTimeout())
	p.lastRx = append(p.lastRx[:0], frame[:proto.FrameLen]...)
	l.reselect()
	// The partner's view of us is stale: tell it at once.
	if pdu.Partner != l.actor(p) {
		p.ntt = true
	}
}

// tick runs the receive timers; it returns true if anything changed.
func (l *lag) tick(now time.Time) bool {
	changed := false
	for _, p := range l.ports {
		if p.state == stateDisabled || now.Before(p.rxExpires) {
			continue
		}
		switch p.state {
		case stateCurrent:
			// 802.1AX EXPIRED: partner assumed short timeout, not in sync.
			p.state = stateExpired
			p.partner.State = (p.partner.State | proto.StateTimeout) &^ proto.StateSync
			p.rxExpires = now.Add(l.rxTimeout())
		case stateExpired:
			p.state = stateDefaulted
			p.partner = proto.Info{}
		default:
			continue
		}
		changed = true
	}
	if changed {
		l.reselect()
	}
	return changed
}

// next is when the runner has work again after now: a receive timer to
// run or, if it transmits, a PDU due (a pending one held back by the rate
// limit is due when the oldest send leaves the window). Zero: none.
func (l *lag) next(now time.Time, transmits bool) time.Time {
	var at time.Time
	earlier := func(t time.Time) {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	for _, p := range l.ports {
		if p.state == stateCurrent || p.state == stateExpired {
			earlier(p.rxExpires)
		}
		if !transmits || p.state == stateDisabled {
			continue
		}
		tx := p.nextTx
		if p.ntt {
			tx = now
		}
		if len(p.txTimes) >= maxTxPerSec {
			if free := p.txTimes[0].Add(time.Second); free.After(tx) {
				tx = free
			}
		}
		earlier(tx)
	}
	return at
}

// reselect picks the aggregator: ports that hear a partner, grouped by the
// partner's system and key; the largest group (then the lowest lead
// ifindex) is selected, if it has min_ports.
func (l *lag) reselect() {
	type group struct {
		lead  int
		ports []*port
	}
	groups := map[[3]uint64]*group{}
	var order [][3]uint64
	for _, p := range l.sortedPorts() {
		p.selected, p.aggID = false, 0
		if p.state != stateCurrent && p.state != stateExpired {
			continue
		}
		if !p.partner.State.Has(proto.StateAggregation) || p.partner.System.IsZero() {
			continue
		}
		var sys uint64
		for _, b := range p.partner.System {
			sys = sys<<8 | uint64(b)
		}
		k := [3]uint64{sys, uint64(p.partner.Key), uint64(p.partner.SystemPriority)}
		g := groups[k]
		if g == nil {
			g = &group{lead: p.ifindex}
			groups[k] = g
			order = append(order, k)
		}
		g.ports = append(g.ports, p)
	}
	var best *group
	for _, k := range order {
		g := groups[k]
		if best == nil || len(g.ports) > len(best.ports) {
			best = g
		}
	}
	if best == nil || len(best.ports) < max(1, l.cfg.Runner.MinPorts) {
		return
	}
	for _, p := range best.ports {
		p.selected, p.aggID = true, best.lead
	}
}

// period is the transmit period: the partner's timeout bit decides
// (teamd's lacp_port_periodic_set).
func period(p *port) time.Duration {
	if p.partner.State.Has(proto.StateTimeout) {
		return periodShort
	}
	return periodLong
}

// due returns the ports that should send now, honouring the rate limit,
// and the frame each sends. It marks them sent.
func (l *lag) due(now time.Time) []outFrame {
	var out []outFrame
	for _, p := range l.sortedPorts() {
		if p.state == stateDisabled {
			continue
		}
		a := l.actor(p)
		if a != p.lastActor {
			p.ntt, p.lastActor = true, a
		}
		if !p.ntt && now.Before(p.nextTx) {
			continue
		}
		// Rate limit: forget sends older than a second.
		keep := p.txTimes[:0]
		for _, t := range p.txTimes {
			if now.Sub(t) < time.Second {
				keep = append(keep, t)
			}
		}
		p.txTimes = keep
		if len(p.txTimes) >= maxTxPerSec {
			continue // ntt stays set; sent when allowed
		}
		out = append(out, outFrame{port: p, pdu: l.pdu(p, a)})
		p.txTimes = append(p.txTimes, now)
		p.ntt = false
		p.nextTx = now.Add(period(p))
	}
	return out
}

type outFrame struct {
	port *port
	pdu  proto.LACPDU
}

func (l *lag) pdu(p *port, actor proto.Info) proto.LACPDU {
	return proto.LACPDU{Dst: proto.SlowProtocolsMAC, Src: p.mac, Actor: actor, Partner: p.partner}
}

// markAllNTT makes every port send at the next chance (takeover).
func (l *lag) markAllNTT() {
	for _, p := range l.ports {
		p.ntt = true
	}
}
