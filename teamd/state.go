package teamd

import (
	"fmt"

	"github.com/teamdwarm/teamdwarm/proto"
)

// State is the StateDump JSON of a teamd with the lacp runner (reference
// §4; libteam teamd_runner_lacp.c, teamd_state.c). The JSON tags are teamd's
// key names.
type State struct {
	Ports      map[string]Port `json:"ports"`
	Runner     RunnerState     `json:"runner"`
	Setup      Setup           `json:"setup"`
	TeamDevice TeamDevice      `json:"team_device"`
}

// IfInfo describes a netdevice.
type IfInfo struct {
	DevAddr    string `json:"dev_addr"`
	DevAddrLen int    `json:"dev_addr_len"`
	Ifindex    int    `json:"ifindex"`
	Ifname     string `json:"ifname"`
}

// TeamDevice is the team netdevice.
type TeamDevice struct {
	IfInfo IfInfo `json:"ifinfo"`
}

// Setup is teamd's setup section.
type Setup struct {
	Daemonized         bool   `json:"daemonized"`
	DBusEnabled        bool   `json:"dbus_enabled"`
	DebugLevel         int    `json:"debug_level"`
	KernelTeamModeName string `json:"kernel_team_mode_name"`
	PID                int    `json:"pid"`
	PIDFile            string `json:"pid_file"`
	RunnerName         string `json:"runner_name"`
	ZMQEnabled         bool   `json:"zmq_enabled"`
	// Passive is teamdwarm's teamd's mode (-P until the takeover
	// signal); absent from any other teamd's state.
	Passive *bool `json:"passive,omitempty"`
}

// RunnerState is the lacp runner's team-wide state.
type RunnerState struct {
	Active       bool   `json:"active"`
	FastRate     bool   `json:"fast_rate"`
	SelectPolicy string `json:"select_policy"`
	SysPrio      int    `json:"sys_prio"`
}

// Port is one port's state.
type Port struct {
	IfInfo      IfInfo      `json:"ifinfo"`
	Link        Link        `json:"link"`
	LinkWatches LinkWatches `json:"link_watches"`
	Runner      PortRunner  `json:"runner"`
}

// Link is a port's link state.
type Link struct {
	Duplex string `json:"duplex"`
	Speed  int    `json:"speed"`
	Up     bool   `json:"up"`
}

// LinkWatches is a port's link watch summary.
type LinkWatches struct {
	List map[string]LinkWatch `json:"list"`
	Up   bool                 `json:"up"`
}

// LinkWatch is one link watch instance.
type LinkWatch struct {
	DelayDown int    `json:"delay_down"`
	DelayUp   int    `json:"delay_up"`
	DownCount int    `json:"down_count"`
	Name      string `json:"name"`
	Up        bool   `json:"up"`
}

// PortRunner is the lacp runner's state of a port.
type PortRunner struct {
	ActorLACPDUInfo   LACPDUInfo `json:"actor_lacpdu_info"`
	PartnerLACPDUInfo LACPDUInfo `json:"partner_lacpdu_info"`
	Aggregator        Aggregator `json:"aggregator"`
	Key               int        `json:"key"`
	Prio              int        `json:"prio"`
	Selected          bool       `json:"selected"`
	// State is "disabled", "current", "expired" or "defaulted".
	State string `json:"state"`
}

// Aggregator is the aggregator a port belongs to.
type Aggregator struct {
	ID       int  `json:"id"`
	Selected bool `json:"selected"`
}

// LACPDUInfo is actor or partner info as teamd prints it.
type LACPDUInfo struct {
	Key            int    `json:"key"`
	Port           int    `json:"port"`
	PortPriority   int    `json:"port_priority"`
	State          int    `json:"state"`
	System         string `json:"system"`
	SystemPriority int    `json:"system_priority"`
}

// Info converts to proto.Info, checking ranges.
func (l LACPDUInfo) Info() (proto.Info, error) {
	mac, err := proto.ParseMAC(l.System)
	if err != nil {
		return proto.Info{}, fmt.Errorf("system %q: %w", l.System, err)
	}
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{{"key", l.Key, 0xffff}, {"port", l.Port, 0xffff}, {"port_priority", l.PortPriority, 0xffff}, {"system_priority", l.SystemPriority, 0xffff}, {"state", l.State, 0xff}} {
		if f.v < 0 || f.v > f.max {
			return proto.Info{}, fmt.Errorf("%s %d out of range 0..%d", f.name, f.v, f.max)
		}
	}
	return proto.Info{SystemPriority: uint16(l.SystemPriority), System: mac, Key: uint16(l.Key),
		PortPriority: uint16(l.PortPriority), Port: uint16(l.Port), State: proto.State(l.State)}, nil
}

// InfoOf is the inverse of LACPDUInfo.Info.
func InfoOf(i proto.Info) LACPDUInfo {
	return LACPDUInfo{Key: int(i.Key), Port: int(i.Port), PortPriority: int(i.PortPriority), State: int(i.State),
		System: i.System.String(), SystemPriority: int(i.SystemPriority)}
}

// PartnerAsksFast reports whether the partner asks for fast PDUs (its
// LACP_Timeout bit) on any port: teamd then sends one a second, else one
// every 30 s.
func (st *State) PartnerAsksFast() bool {
	for _, p := range st.Ports {
		if proto.State(p.Runner.PartnerLACPDUInfo.State)&proto.StateTimeout != 0 {
			return true
		}
	}
	return false
}
