package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
)

// The lab's namespaces: the switch under test and its LACP peer.
const (
	DUT  = "labdut"
	PEER = "labpeer"
)

// FlowsPerLAG is how many flows cross each LAG in each direction: each
// pair of addresses hashes to a member of its own (teamd's default tx hash
// and the bond's layer3+4 both include the addresses).
const FlowsPerLAG = 4

// LAG is one port channel of the lab's topology.
type LAG struct {
	testbed.LAG              // Bond is the peer's bonding device
	DUTAddrs    []netip.Addr // on the team device, one per flow
	PeerAddr    []netip.Addr // on the bond, one per flow
}

// Topo is a built topology: DUT and PEER namespaces, LAGs x members veth
// pairs, and in PEER one Linux bonding device per LAG (802.3ad, fast
// rate) with the flows' addresses. The team devices are teamd's to make.
type Topo struct {
	LAGs []LAG
	Dir  string // scratch: configs, records, dump files
}

// Build makes the topology; Close removes it. Members are named like
// SONiC's ports (Ethernet0, Ethernet4, ...) on the DUT side.
func Build(ctx context.Context, lags, members int, dir string) (*Topo, error) {
	t := &Topo{Dir: dir}
	for _, ns := range []string{DUT, PEER} {
		_ = run(ctx, "ip", "netns", "del", ns) // an earlier scenario's, if it failed half-way
		if err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		if err := run(ctx, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			t.Close()
			return nil, err
		}
	}
	port := 0
	for i := 1; i <= lags; i++ {
		l := LAG{LAG: testbed.LAG{Name: fmt.Sprintf("PortChannel%d", i), MAC: proto.MAC{0x02, 0x54, 0x44, 0x57, 0, byte(i)},
			Bond: fmt.Sprintf("bond%d", i)}}
		if err := run(ctx, "ip", "-n", PEER, "link", "add", l.Bond, "type", "bond", "mode", "802.3ad", "lacp_rate", "fast",
			"miimon", "100", "xmit_hash_policy", "layer3+4"); err != nil {
			t.Close()
			return nil, err
		}
		for j := 1; j <= members; j++ {
			m := testbed.Member{LAG: l.Name, DUT: fmt.Sprintf("Ethernet%d", port), Peer: fmt.Sprintf("l%dm%d", i, j)}
			port += 4
			for _, c := range [][]string{
				{"ip", "link", "add", m.DUT, "netns", DUT, "type", "veth", "peer", "name", m.Peer, "netns", PEER},
				// The DUT side stays down: the team driver refuses to
				// enslave a port that is up (EBUSY); teamd sets it up.
				{"ip", "-n", PEER, "link", "set", m.Peer, "master", l.Bond},
			} {
				if err := run(ctx, c[0], c[1:]...); err != nil {
					t.Close()
					return nil, err
				}
			}
			l.Members = append(l.Members, m)
		}
		// Both ends hash a flow by its addresses (teamd's default
		// tx_hash is eth,ipv4,ipv6; the bond's layer3+4), the team's to a
		// member by the low bits of their XOR: pairs whose XOR alternates
		// in its low bits spread over the members.
		for k := 1; k <= FlowsPerLAG; k++ {
			l.DUTAddrs = append(l.DUTAddrs, netip.AddrFrom4([4]byte{10, byte(i), 0, byte(k)}))
			l.PeerAddr = append(l.PeerAddr, netip.AddrFrom4([4]byte{10, byte(i), 0, byte(100 + 2*k)}))
		}
		for _, a := range l.PeerAddr {
			if err := run(ctx, "ip", "-n", PEER, "addr", "add", a.String()+"/24", "dev", l.Bond); err != nil {
				t.Close()
				return nil, err
			}
		}
		if err := run(ctx, "ip", "-n", PEER, "link", "set", l.Bond, "up"); err != nil {
			t.Close()
			return nil, err
		}
		t.LAGs = append(t.LAGs, l)
	}
	return t, nil
}

// Close removes both namespaces, and with them every link of the lab.
func (t *Topo) Close() error {
	var errs []error
	for _, ns := range []string{DUT, PEER} {
		if err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TeamdConfig writes l's teamd config (SONiC's teammgrd's, fast rate, with
// its members listed so that teamd adds them itself) and returns its path.
func (t *Topo) TeamdConfig(l LAG) (string, error) {
	path := filepath.Join(t.Dir, l.Name+".conf")
	return path, os.WriteFile(path, []byte(l.TeamdConfig(true)), 0o644)
}

// Address puts the flows' addresses on l's team device once teamd has made
// it, and sets it up.
func (t *Topo) Address(ctx context.Context, l LAG) error {
	for _, a := range l.DUTAddrs {
		if err := run(ctx, "ip", "-n", DUT, "addr", "replace", a.String()+"/24", "dev", l.Name); err != nil {
			return err
		}
	}
	return run(ctx, "ip", "-n", DUT, "link", "set", l.Name, "up")
}

// Testbed is the topology as the test bed's observer takes it.
func (t *Topo) Testbed() []testbed.LAG {
	var out []testbed.LAG
	for _, l := range t.LAGs {
		out = append(out, l.LAG)
	}
	return out
}

// run runs a command, its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}
