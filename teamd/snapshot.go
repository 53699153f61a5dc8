package teamd

import (
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// SnapshotMembers turns a StateDump's ports into a snapshot's members
// (proto.Snapshot), sorted by name: what the old teamd knew of each
// member when it stopped, its last PDU sent at lastTx, and the partner's
// last PDU from portDump (teamd's per-port dump file, nil if there is
// none). A field teamd gave badly is left empty and passed to warn.
func SnapshotMembers(st *State, lastTxMono int64, lastTx time.Time, portDump func(port string) []byte, warn func(port, field string, err error)) []proto.Member {
	var ms []proto.Member
	for _, name := range st.PortNames() {
		p := st.Ports[name]
		m := proto.Member{
			Name: name, Ifindex: p.IfInfo.Ifindex, State: p.Runner.State, Selected: p.Runner.Selected,
			AggregatorID: p.Runner.Aggregator.ID, LastTxMono: lastTxMono, LastTx: lastTx,
		}
		m.MAC, _ = proto.ParseMAC(p.IfInfo.DevAddr)
		var err error
		if m.Actor, err = p.Runner.ActorLACPDUInfo.Info(); err != nil {
			warn(name, "actor", err)
		}
		if m.Partner, err = p.Runner.PartnerLACPDUInfo.Info(); err != nil {
			warn(name, "partner", err)
		}
		m.LastRx = portDump(name)
		ms = append(ms, m)
	}
	return ms
}

// SnapshotRunner is the snapshot's view of the team: its MAC and runner.
func SnapshotRunner(st *State) (proto.MAC, proto.Runner) {
	mac, _ := proto.ParseMAC(st.TeamDevice.IfInfo.DevAddr)
	return mac, proto.Runner{Active: st.Runner.Active, FastRate: st.Runner.FastRate, SysPrio: uint16(st.Runner.SysPrio)}
}
