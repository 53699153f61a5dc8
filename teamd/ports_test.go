package teamd

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
