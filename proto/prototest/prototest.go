// Package prototest builds valid, realistic handoff records for tests,
// benchmarks and the README's sample files.
package prototest

import (
	"fmt"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// Clock pins the times a sample record carries: Mono is a CLOCK_MONOTONIC
// reading in ns and Wall the matching wall time.
type Clock struct {
	Mono int64
	Wall time.Time
}

// DefaultClock is a fixed, plausible clock so samples are reproducible.
var DefaultClock = Clock{Mono: 5_000_000_000_000, Wall: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}

// TeamMAC is the LAG's system MAC in samples; PeerMAC the partner's.
var (
	TeamMAC = proto.MAC{0x02, 0x54, 0x44, 0x00, 0x00, 0x01}
	PeerMAC = proto.MAC{0x02, 0x50, 0x45, 0x45, 0x52, 0x01}
)

// Member returns member i of a LAG as a negotiated fast-rate port in the
// selected aggregator, named like SONiC's front-panel ports.
func Member(i int, c Clock) proto.Member {
	port := uint16(4*i + 1) // SONiC: "Ethernet" number + 1
	actor := proto.Info{SystemPriority: 65535, System: TeamMAC, Key: 1, PortPriority: 255, Port: port,
		State: proto.StateActivity | proto.StateTimeout | proto.StateAggregation | proto.InService}
	partner := proto.Info{SystemPriority: 65535, System: PeerMAC, Key: 1, PortPriority: 65535, Port: uint16(i + 1),
		State: proto.StateActivity | proto.StateTimeout | proto.StateAggregation | proto.InService}
	mac := proto.MAC{0x02, 0x44, 0x55, 0x54, byte(i >> 8), byte(i)}
	pdu := proto.LACPDU{Dst: proto.SlowProtocolsMAC, Src: proto.MAC{0x02, 0x50, 0x45, 0x45, byte(i >> 8), byte(i)}, Actor: partner, Partner: actor}
	rx, _ := pdu.MarshalBinary()
	return proto.Member{
		Name: fmt.Sprintf("Ethernet%d", 4*i), Ifindex: 100 + i, MAC: mac,
		Actor: actor, Partner: partner, State: "current", Selected: true, AggregatorID: 100,
		LastTxMono: c.Mono - 300_000_000, LastTx: c.Wall.Add(-300 * time.Millisecond),
		LastRx: rx,
	}
}

// Snapshot returns a snapshot of lag at epoch with n members.
func Snapshot(lag string, epoch uint64, n int, c Clock) *proto.Snapshot {
	s := &proto.Snapshot{
		Schema: proto.SchemaVersion, LAG: lag, Epoch: epoch,
		Writer:       proto.Process{Container: "teamd_bak", Hostname: "sonic", PID: 41},
		ConfigDigest: "sha256:7d1a0c5e",
		TeamMAC:      TeamMAC,
		Runner:       proto.Runner{Active: true, FastRate: true, SysPrio: 65535},
		TeamdStop:    "exited 0",
		TakenMono:    c.Mono, Taken: c.Wall,
	}
	s.LAGDump = fmt.Appendf(nil, "1\n%d\n", n)
	for i := range n {
		m := Member(i, c)
		s.Members = append(s.Members, m)
		s.LAGDump = fmt.Appendf(s.LAGDump, "%s\n1\n", m.Name)
	}
	return s
}

// Standby returns the standby record of lag at epoch with n members.
func Standby(lag string, epoch uint64, n int, c Clock) *proto.Standby {
	s := &proto.Standby{
		Schema: proto.SchemaVersion, LAG: lag, Epoch: epoch,
		Writer:       proto.Process{Container: "teamd", Hostname: "sonic", PID: 17},
		ConfigDigest: "sha256:7d1a0c5e",
		ReadyMono:    c.Mono - 2_000_000_000, Ready: c.Wall.Add(-2 * time.Second),
	}
	for i := range n {
		m := Member(i, c)
		s.Members = append(s.Members, proto.StandbyMember{Name: m.Name, State: "current", Partner: m.Partner})
	}
	return s
}

// Active returns the active record of lag at epoch, taken over by snapshot.
func Active(lag string, epoch uint64, n int, c Clock) *proto.Active {
	a := &proto.Active{
		Schema: proto.SchemaVersion, LAG: lag, Epoch: epoch,
		Writer:       proto.Process{Container: "teamd", Hostname: "sonic", PID: 17},
		ConfigDigest: "sha256:7d1a0c5e",
		Path:         proto.PathSnapshot, FromEpoch: epoch - 1,
		SinceMono: c.Mono + 12_000_000, Since: c.Wall.Add(12 * time.Millisecond),
		Timings: proto.Timings{CutoverSeen: c.Mono - 4_000_000, SnapshotSeen: c.Mono + 1_000_000,
			SignalSent: c.Mono + 2_000_000, Confirmed: c.Mono + 12_000_000},
	}
	for i := range n {
		a.Members = append(a.Members, Member(i, c).Name)
	}
	return a
}

// Cutover returns a cutover from epoch to epoch+1 for lags.
func Cutover(epoch uint64, lags []string, c Clock) *proto.Cutover {
	return &proto.Cutover{
		Schema: proto.SchemaVersion, FromEpoch: epoch, ToEpoch: epoch + 1,
		Writer:      proto.Process{Hostname: "sonic", PID: 1234},
		StartedMono: c.Mono - 5_000_000, Started: c.Wall.Add(-5 * time.Millisecond),
		DeadlineMono: c.Mono + 1_500_000_000,
		LAGs:         lags,
	}
}

// Journal returns the supervisor's journal of an upgrade from epoch to
// epoch+1, at stage.
func Journal(epoch uint64, stage string, c Clock) *proto.Journal {
	return &proto.Journal{
		Schema: proto.SchemaVersion, Operation: "upgrade", Container: "teamd", Backup: "teamd_bak",
		Image: "docker-teamd:v2", OldID: "4f1c0e2d9a3b", OldImage: "docker-teamd:v1", NewID: "9e8d7c6b5a41",
		FromEpoch: epoch, ToEpoch: epoch + 1, Stage: stage, RestartPolicy: "unless-stopped",
		Writer:  proto.Process{Hostname: "sonic", PID: 1234},
		Started: c.Wall.Add(-3 * time.Second), Updated: c.Wall,
	}
}

// Kernel is the kernel's view of a negotiated LAG with members ports, as
// teamnl reads it: device up with carrier, every port enabled and up.
func Kernel(lag string, members int) *proto.KernelLAG {
	k := &proto.KernelLAG{Name: lag, Ifindex: 50, Up: true, Carrier: true}
	for i := range members {
		k.Ports = append(k.Ports, proto.KernelPort{Name: fmt.Sprintf("Ethernet%d", 4*i), Ifindex: 100 + i,
			Enabled: true, LinkUp: true, Carrier: true})
	}
	return k
}

// Teamd is a SONiC teamd with the HLD's patches, as the shim reports it.
func Teamd() *proto.TeamdInfo {
	return &proto.TeamdInfo{Program: "/usr/bin/teamd.real", Version: "teamd 1.31", Profile: "hld"}
}
