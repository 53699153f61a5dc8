// Package testbed builds the real-peer test bed: a DUT and a PEER network
// namespace joined by veth pairs (N LAGs x M members), Open vSwitch in the
// PEER namespace as the LACP partner (userspace datapath, lacp=active,
// lacp-time=fast), a wire observer on the peer side of every member, and a
// verdict on what the peer saw.
//
// Everything a Bed creates is removed by Close, also after a failure; a
// test binary killed before Close leaves namespaces that the next run's
// Sweep removes (their names carry the creating process's pid).
package testbed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// Topology says what to build.
type Topology struct {
	LAGs    int // PortChannel1..N
	Members int // per LAG, 2 or more (an OVS bond needs two)
	// DUTPid, if set, is a process whose network namespace becomes the DUT
	// namespace (ip netns attach), e.g. the container that teamd
	// containers join; else the DUT namespace is a new one. Close then
	// only detaches the name: the namespace is the process's.
	DUTPid int
}

// Member is one LAG member: a veth pair, DUT side and peer side.
type Member struct {
	LAG  string // "PortChannel1"
	DUT  string // DUT-side interface, named like SONiC's: "Ethernet0"
	Peer string // peer-side interface in the PEER namespace
}

// LAG is one port channel of the topology.
type LAG struct {
	Name    string
	MAC     proto.MAC // the team's hwaddr: its LACP system id
	Bond    string    // the OVS bond facing it
	Members []Member
}

// Bed is a built topology with its peer and observer.
type Bed struct {
	DUT, PEER string // namespace names
	LAGs      []LAG
	Dir       string // scratch directory (OVS db, logs, run)

	ovs      *OVS
	observer *Observer
	closed   atomic.Bool
	mu       sync.Mutex
	cleanups []func() error // guarded by mu, run in reverse by Close
}

// New builds the topology under dir and starts Open vSwitch and the
// observer. On error everything built so far is removed.
func New(ctx context.Context, topo Topology, dir string) (_ *Bed, err error) {
	// Open vSwitch wants two interfaces at least for a bond.
	if topo.LAGs < 1 || topo.Members < 2 || topo.LAGs*topo.Members > 512 {
		return nil, fmt.Errorf("testbed: topology %dx%d out of range", topo.LAGs, topo.Members)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := fmt.Sprintf("%s%dx%x", namePrefix, os.Getpid(), rnd)
	b := &Bed{DUT: id + "-dut", PEER: id + "-peer", Dir: dir}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	for _, ns := range []string{b.DUT, b.PEER} {
		if ns == b.DUT && topo.DUTPid != 0 {
			if _, err := run(ctx, "ip", "netns", "attach", ns, fmt.Sprint(topo.DUTPid)); err != nil {
				return nil, err
			}
			b.onClose(func() error { return detachNetns(ns) })
		} else {
			if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
				return nil, err
			}
			b.onClose(func() error { return deleteNetns(ns) })
		}
		if _, err := run(ctx, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	port := 0
	for i := range topo.LAGs {
		l := LAG{Name: fmt.Sprintf("PortChannel%d", i+1), Bond: fmt.Sprintf("bond%d", i+1),
			MAC: proto.MAC{0x02, 0x54, 0x44, 0x57, byte((i + 1) >> 8), byte(i + 1)}}
		for j := range topo.Members {
			m := Member{LAG: l.Name, DUT: fmt.Sprintf("Ethernet%d", port), Peer: fmt.Sprintf("l%dm%d", i+1, j+1)}
			port += 4
			if _, err := run(ctx, "ip", "link", "add", m.DUT, "netns", b.DUT, "type", "veth", "peer", "name", m.Peer, "netns", b.PEER); err != nil {
				return nil, err
			}
			for _, side := range [][2]string{{b.DUT, m.DUT}, {b.PEER, m.Peer}} {
				if _, err := run(ctx, "ip", "-n", side[0], "link", "set", side[1], "up"); err != nil {
					return nil, err
				}
			}
			l.Members = append(l.Members, m)
		}
		b.LAGs = append(b.LAGs, l)
	}
	if b.ovs, err = startOVS(ctx, b.PEER, filepath.Join(dir, "ovs"), b.LAGs); err != nil {
		return nil, err
	}
	b.onClose(b.ovs.stop)
	if b.observer, err = Observe(b.PEER, b.LAGs); err != nil {
		return nil, err
	}
	b.onClose(b.observer.Close)
	return b, nil
}

func (b *Bed) onClose(f func() error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, f)
}

// Close stops everything and removes the namespaces (their veths go with
// them). It is safe to call more than once.
func (b *Bed) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.mu.Lock()
	cs := b.cleanups
	b.cleanups = nil
	b.mu.Unlock()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i]())
	}
	return errors.Join(errs...)
}

// OVS is the bed's LACP peer.
func (b *Bed) OVS() *OVS { return b.ovs }

// Observer is the bed's wire observer.
func (b *Bed) Observer() *Observer { return b.observer }

// Members lists every member of every LAG.
func (b *Bed) Members() []Member {
	var ms []Member
	for _, l := range b.LAGs {
		ms = append(ms, l.Members...)
	}
	return ms
}

// TeamdConfig is the teamd JSON SONiC's teammgrd writes for l (fast rate),
// with the members listed under "ports" so a plain teamd adds them itself.
func (l LAG) TeamdConfig(withPorts bool) string {
	var ports []string
	if withPorts {
		for _, m := range l.Members {
			ports = append(ports, fmt.Sprintf(`"%s":{"lacp_key":1}`, m.DUT))
		}
	}
	return fmt.Sprintf(`{"device":"%s","hwaddr":"%s","runner":{"active":true,"name":"lacp","fast_rate":true},"ports":{%s}}`,
		l.Name, l.MAC, strings.Join(ports, ","))
}

// WaitNegotiated waits until OVS reports every member of every LAG current
// and enabled (collecting/distributing on both sides).
func (b *Bed) WaitNegotiated(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		last = b.ovs.allEnabled(ctx, b.LAGs)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("LAGs not negotiated within %v: %w", timeout, last)
		case <-time.After(100 * time.Millisecond): // polling OVS: it has no event to wait on
		}
	}
}
