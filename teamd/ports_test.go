package teamd

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/teamdwarm/teamdwarm/proto"
)

func TestCompareNames(t *testing.T) {
	got := SortNames([]string{"Ethernet12", "Ethernet8", "Ethernet100", "Ethernet0", "eth1", "Ethernet"})
	want := []string{"Ethernet", "Ethernet0", "Ethernet8", "Ethernet12", "Ethernet100", "eth1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestStatePortNames(t *testing.T) {
	st := &State{Ports: map[string]Port{"Ethernet12": {}, "Ethernet8": {}, "Ethernet0": {}}}
	if diff := cmp.Diff([]string{"Ethernet0", "Ethernet8", "Ethernet12"}, st.PortNames()); diff != "" {
		t.Errorf("PortNames (-want +got):\n%s", diff)
	}
}

func TestPartnerAsksFast(t *testing.T) {
	port := func(state int) Port {
		return Port{Runner: PortRunner{PartnerLACPDUInfo: LACPDUInfo{State: state}}}
	}
	for _, tc := range []struct {
		name  string
		ports map[string]Port
		want  bool
	}{
		{"no ports", nil, false},
		{"slow", map[string]Port{"Ethernet0": port(0x3d)}, false},
		{"fast", map[string]Port{"Ethernet0": port(0x3f)}, true},
		{"one fast of two", map[string]Port{"Ethernet0": port(0x3d), "Ethernet4": port(int(proto.StateTimeout))}, true},
	} {
		st := &State{Ports: tc.ports}
		if got := st.PartnerAsksFast(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
