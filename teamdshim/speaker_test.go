package teamdshim

import (
	"strings"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// /proc/net/packet as Linux prints it, captured in a network namespace
// with a veth pair: a Slow Protocols socket on each end (as teamd has one
// per port) and an ETH_P_ALL one (as the shim's outgoing watch).
const procNetPacket = `sk               RefCnt Type Proto  Iface R Rmem   User   Inode
00000000b0d4e495 3      3    8809   3     1 0      0      232970
00000000e3492ba4 3      3    8809   2     1 0      0      232971
0000000092e91afc 3      3    0003   3     1 0      0      232972
`

func TestParsePacketSockets(t *testing.T) {
	socks, err := parsePacketSockets(strings.NewReader(procNetPacket))
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 3 || socks[0] != (packetSocket{proto: 0x8809, ifindex: 3, inode: 232970}) || socks[2] != (packetSocket{proto: 0x0003, ifindex: 3, inode: 232972}) {
		t.Fatalf("%+v", socks)
	}
	for _, bad := range []string{"", "Num RefCount Protocol\n", "sk RefCnt Type Proto Iface R Rmem User Inode\nffff 3 3 zz 3 1 0 0 1\n"} {
		if _, err := parsePacketSockets(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestEvidence(t *testing.T) {
	const proof = 1500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		ev     evidence
		silent bool
		why    string
	}{
		{"sockets gone", evidence{watched: true, quiet: 200 * time.Millisecond, sockets: true}, true, "sockets are gone"},
		{"quiet wire", evidence{watched: true, quiet: 1600 * time.Millisecond, sockets: true, foreign: 2}, true, "no LACPDU left the members for 1.6s"},
		{"speaking", evidence{watched: true, quiet: 400 * time.Millisecond}, false, "sent a LACPDU 400ms ago"},
		{"sockets open, no wire", evidence{sockets: true, foreign: 2}, false, "still has 2 LACP sockets open"},
		{"nothing known", evidence{}, false, "no evidence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			silent, why := tc.ev.silent(proof)
			if silent != tc.silent || !strings.Contains(why, tc.why) {
				t.Errorf("silent %v (%s), want %v (%s)", silent, why, tc.silent, tc.why)
			}
		})
	}
}

// A failover beside the old teamd's open sockets needs a longer quiet
// wire than a takeover after the cutover.
func TestFailoverProof(t *testing.T) {
	const proof = 1500 * time.Millisecond
	ev := evidence{watched: true, quiet: 1800 * time.Millisecond, sockets: true, foreign: 2}
	if silent, _ := ev.silent(proof); !silent {
		t.Error("1.8s quiet after the cutover: not silent")
	}
	if silent, why := ev.silent(failoverProof(proof)); silent {
		t.Errorf("1.8s quiet before any cutover, sockets open: silent (%s)", why)
	}
}

func TestSilenceProof(t *testing.T) {
	fast := &teamd.State{Ports: map[string]teamd.Port{"Ethernet0": {Runner: teamd.PortRunner{PartnerLACPDUInfo: teamd.LACPDUInfo{State: 0x3f}}}}}
	slow := &teamd.State{Ports: map[string]teamd.Port{"Ethernet0": {Runner: teamd.PortRunner{PartnerLACPDUInfo: teamd.LACPDUInfo{State: 0x3d}}}}}
	if got := silenceProof(fast); got != 1500*time.Millisecond {
		t.Errorf("fast partner: %v", got)
	}
	if got := silenceProof(slow); got != 45*time.Second {
		t.Errorf("slow partner: %v", got)
	}
}

// A waiting standby looks once the wire could first have been quiet for
// what the look needs, with slack for a late PDU, not every standbyCheck:
// while the old speaker transmits, one look a period.
func TestNextLook(t *testing.T) {
	const proof = 1500 * time.Millisecond
	now := time.Now()
	watched := &outgoing{} // as many sockets as members (none)
	for _, tc := range []struct {
		name string
		w    standbyWait
		want time.Duration
	}{
		{"speaking, before the cutover", standbyWait{confirm: watched, lastOut: now.Add(-100 * time.Millisecond)}, 1025 * time.Millisecond},
		{"speaking, after the cutover", standbyWait{confirm: watched, cut: &proto.Cutover{}, lastOut: now.Add(-100 * time.Millisecond)}, time.Second},
		{"a PDU due any moment", standbyWait{confirm: watched, lastOut: now.Add(-time.Second)}, standbyCheck},
		{"quiet once: look again soon", standbyWait{confirm: watched, cut: &proto.Cutover{}, lastOut: now, quietLooks: 1}, standbyCheck},
		{"the wire unwatched", standbyWait{lastOut: now}, standbyCheck},
		{"past the deadline", standbyWait{confirm: watched, lastOut: now, late: true}, deadlineCheck},
		{"this standby's spread", standbyWait{confirm: watched, lastOut: now.Add(-100 * time.Millisecond), lookSpread: 70 * time.Millisecond}, 1095 * time.Millisecond},
		{"no spread after the cutover", standbyWait{confirm: watched, cut: &proto.Cutover{}, lastOut: now.Add(-100 * time.Millisecond), lookSpread: 70 * time.Millisecond}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.w.proof = proof
			s := &Shim{sb: &tc.w}
			if got := s.nextLook(now); got != tc.want {
				t.Errorf("next look in %v, want %v", got, tc.want)
			}
		})
	}
}
