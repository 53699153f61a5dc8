package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
)

// FlowPeriod is how often each flow sends: FlowsPerLAG flows per LAG and
// direction at 100 packets/s each.
const FlowPeriod = 10 * time.Millisecond

const flowPort = 47000

// Traffic is UDP across every LAG in both directions, counted per flow by
// sequence number.
type Traffic struct {
	flows []*flow
	stop  chan struct{}
	wg    sync.WaitGroup
}

type flow struct {
	lag, dir string // dir "dut->peer" or "peer->dut"
	id       uint16
	tx, rx   *net.UDPConn
	to       *net.UDPAddr

	sent atomic.Uint32 // packets sent (the next sequence number)
	base atomic.Uint32 // sequence number the count starts at
	errs atomic.Uint32 // writes the kernel refused

	mu   sync.Mutex
	seen map[uint32]bool // guarded by mu: sequence numbers received
}

// Direction is one direction across one LAG: what was sent and received.
type Direction struct {
	LAG      string `json:"lag"`
	Dir      string `json:"dir"`
	Sent     int    `json:"sent"`
	Received int    `json:"received"`
	Lost     int    `json:"lost"`
	// WriteErrors are sends the kernel refused (counted as lost), since
	// the traffic started.
	WriteErrors int `json:"write_errors,omitempty"`
	// Missing names the first lost packets: flow, sequence number, and
	// when in the window it was sent.
	Missing []string `json:"missing,omitempty"`
}

// StartTraffic opens the flows' sockets (each in its namespace) and starts
// sending.
func StartTraffic(lags []LAG) (*Traffic, error) {
	t := &Traffic{stop: make(chan struct{})}
	id := uint16(0)
	for _, l := range lags {
		for k := range l.DUTAddrs {
			for _, d := range []struct {
				name         string
				fromNS, toNS string
				fromIP, toIP netip.Addr
			}{
				{"dut->peer", DUT, PEER, l.DUTAddrs[k], l.PeerAddr[k]},
				{"peer->dut", PEER, DUT, l.PeerAddr[k], l.DUTAddrs[k]},
			} {
				id++
				f := &flow{lag: l.Name, dir: d.name, id: id, seen: map[uint32]bool{},
					to: net.UDPAddrFromAddrPort(netip.AddrPortFrom(d.toIP, flowPort+id))}
				err := testbed.InNetns(d.fromNS, func() (err error) {
					f.tx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(d.fromIP, flowPort+id)))
					return err
				})
				if err == nil {
					err = testbed.InNetns(d.toNS, func() (err error) {
						f.rx, err = net.ListenUDP("udp4", f.to)
						return err
					})
				}
				if err != nil {
					t.close()
					return nil, fmt.Errorf("traffic %s %s: %w", l.Name, d.name, err)
				}
				t.flows = append(t.flows, f)
			}
		}
	}
	for _, f := range t.flows {
		t.wg.Add(2)
		go t.send(f)
		go t.receive(f)
	}
	return t, nil
}

func (t *Traffic) send(f *flow) {
	defer t.wg.Done()
	tick := time.NewTicker(FlowPeriod)
	defer tick.Stop()
	var buf [8]byte
	binary.BigEndian.PutUint16(buf[0:], f.id)
	for seq := uint32(0); ; seq++ {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		// Every attempt is sent, and its sequence number the count:
		// a write the kernel refuses is a lost packet.
		binary.BigEndian.PutUint32(buf[4:], seq)
		if _, err := f.tx.WriteToUDP(buf[:], f.to); err != nil {
			f.errs.Add(1)
		}
		f.sent.Store(seq + 1)
	}
}

func (t *Traffic) receive(f *flow) {
	defer t.wg.Done()
	buf := make([]byte, 64)
	for {
		n, _, err := f.rx.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 8 || binary.BigEndian.Uint16(buf) != f.id {
			continue
		}
		f.mu.Lock()
		f.seen[binary.BigEndian.Uint32(buf[4:])] = true
		f.mu.Unlock()
	}
}

// Flowing waits until every flow has had a packet through (ARP resolved,
// the LAGs carrying), then starts the count afresh.
func (t *Traffic) Flowing(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(FlowPeriod)
	defer tick.Stop()
	for {
		dry := ""
		for _, f := range t.flows {
			f.mu.Lock()
			n := len(f.seen)
			f.mu.Unlock()
			if n == 0 {
				dry = f.lag + " " + f.dir
				break
			}
		}
		if dry == "" {
			t.Reset()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("traffic does not flow within %v: nothing through %s", timeout, dry)
		case <-tick.C:
		}
	}
}

// Reset starts the count afresh: what was sent before is not counted.
// Receipts are kept (those before the new base are dropped): a packet
// sent as the count moves may have arrived just before it moved, and
// must not be forgotten then counted as lost.
func (t *Traffic) Reset() {
	for _, f := range t.flows {
		f.mu.Lock()
		base := f.sent.Load()
		for seq := range f.seen {
			if seq < base {
				delete(f.seen, seq)
			}
		}
		f.base.Store(base)
		f.mu.Unlock()
	}
}

// drainWait bounds how long Count waits for packets in flight: the veths
// and stacks deliver within milliseconds, so what is missing after this is
// lost.
const drainWait = 300 * time.Millisecond

// Count says, per LAG and direction, what was sent and received since the
// last Reset. The window ends now: packets sent after are not counted,
// and those in flight are awaited (up to drainWait).
func (t *Traffic) Count() []Direction {
	ends := make([]uint32, len(t.flows))
	for i, f := range t.flows {
		ends[i] = f.sent.Load()
	}
	received := func(i int) int {
		f := t.flows[i]
		base := f.base.Load()
		f.mu.Lock()
		defer f.mu.Unlock()
		n := 0
		for seq := range f.seen {
			if seq >= base && seq < ends[i] {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(drainWait)
	for i := 0; i < len(t.flows); {
		if received(i) == int(ends[i]-t.flows[i].base.Load()) || time.Now().After(deadline) {
			i++
			continue
		}
		time.Sleep(FlowPeriod / 4) // the receive loop has no notification; the bound above ends this
	}
	var out []Direction
	index := map[string]int{}
	for i, f := range t.flows {
		key := f.lag + " " + f.dir
		j, ok := index[key]
		if !ok {
			j = len(out)
			index[key] = j
			out = append(out, Direction{LAG: f.lag, Dir: f.dir})
		}
		out[j].Sent += int(ends[i] - f.base.Load())
		out[j].Received += received(i)
		out[j].Lost = out[j].Sent - out[j].Received
		out[j].WriteErrors += int(f.errs.Load())
		base := f.base.Load()
		f.mu.Lock()
		for seq := base; seq < ends[i] && len(out[j].Missing) < 5; seq++ {
			if !f.seen[seq] {
				out[j].Missing = append(out[j].Missing, fmt.Sprintf("flow %d seq %d (+%v)", f.id, seq, time.Duration(seq-base)*FlowPeriod))
			}
		}
		f.mu.Unlock()
	}
	return out
}

// Stop stops the flows and closes their sockets.
func (t *Traffic) Stop() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	t.close()
	t.wg.Wait()
}

func (t *Traffic) close() {
	for _, f := range t.flows {
		for _, c := range []*net.UDPConn{f.tx, f.rx} {
			if c != nil {
				_ = c.Close()
			}
		}
	}
}

// Lost is the total lost of ds, and an error naming each direction that
// lost any or carried nothing.
func Lost(ds []Direction) (int, error) {
	lost := 0
	var errs []error
	for _, d := range ds {
		lost += d.Lost
		switch {
		case d.Sent == 0:
			errs = append(errs, fmt.Errorf("%s %s: nothing sent", d.LAG, d.Dir))
		case d.Lost != 0:
			errs = append(errs, fmt.Errorf("%s %s: %d of %d lost (%d writes refused since the start): %s", d.LAG, d.Dir, d.Lost, d.Sent, d.WriteErrors, strings.Join(d.Missing, ", ")))
		}
	}
	return lost, errors.Join(errs...)
}
