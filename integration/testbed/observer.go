package testbed

import (
	"errors"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/proto"
)

// PDU is one LACPDU from the DUT as the peer side received it.
type PDU struct {
	At  time.Time
	PDU proto.LACPDU
	Err error // the frame did not decode
}

// Observer records every LACPDU arriving at the peer side of each member,
// independently of the peer (Open vSwitch has its own sockets on the same
// interfaces; Linux bonding takes the LACPDUs in its rx handler). It taps
// all protocols (lacpsock.Watch): a socket bound to the Slow Protocols
// ethertype gets nothing on a bonding slave, whose rx handler consumes
// the LACPDUs before protocol handlers run.
type Observer struct {
	mu    sync.Mutex
	pdus  map[string][]PDU // by peer-side interface; guarded by mu
	conns []*lacpsock.Conn
	wg    sync.WaitGroup
}

// Observe starts recording, in namespace peerNS, the LACPDUs that arrive
// on the peer side of every member of lags. Close stops it.
func Observe(peerNS string, lags []LAG) (*Observer, error) {
	o := &Observer{pdus: map[string][]PDU{}}
	for _, l := range lags {
		for _, m := range l.Members {
			var c *lacpsock.Conn
			err := InNetns(peerNS, func() (err error) {
				c, err = lacpsock.Watch(m.Peer)
				return err
			})
			if err != nil {
				o.Close()
				return nil, err
			}
			o.conns = append(o.conns, c)
			o.wg.Add(1)
			go o.read(m.Peer, c)
		}
	}
	return o, nil
}

func (o *Observer) read(name string, c *lacpsock.Conn) {
	defer o.wg.Done()
	buf := make([]byte, 2048)
	for {
		fr, err := c.Read(buf)
		if errors.Is(err, lacpsock.ErrClosed) {
			return
		}
		if err != nil || fr.Outgoing {
			continue // OVS's own PDUs leave through this interface
		}
		p := PDU{At: fr.At}
		p.PDU, p.Err = proto.ParseLACPDU(fr.Data)
		o.mu.Lock()
		o.pdus[name] = append(o.pdus[name], p)
		o.mu.Unlock()
	}
}

// Close stops the observer and closes its sockets.
func (o *Observer) Close() error {
	for _, c := range o.conns {
		c.Close()
	}
	o.wg.Wait()
	return nil
}

// PDUs returns what arrived on the peer interface name in [from, to].
func (o *Observer) PDUs(name string, from, to time.Time) []PDU {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []PDU
	for _, p := range o.pdus[name] {
		if !p.At.Before(from) && !p.At.After(to) {
			out = append(out, p)
		}
	}
	return out
}

// Before returns the last decodable PDU that arrived on name before t.
func (o *Observer) Before(name string, t time.Time) (PDU, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ps := o.pdus[name]
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].At.Before(t) && ps[i].Err == nil {
			return ps[i], true
		}
	}
	return PDU{}, false
}
