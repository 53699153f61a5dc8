package teamdshim

import (
	"slices"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
)

// An active shim's fence watch keeps only kinds init subscribes an active
// shim to: a kind it kept but was not sent would never reach it.
func TestWatchedKindsCoverTheActiveFilter(t *testing.T) {
	s := &Shim{lag: "PortChannel1"}
	for k := proto.Kind(0); k < 16; k++ {
		if s.myActive("PortChannel1", k) && !slices.Contains(watchedKinds(proto.RoleActive), k) {
			t.Errorf("the fence keeps %v, which init does not subscribe an active shim to", k)
		}
	}
	for _, k := range watchedKinds(proto.RoleActive) {
		if !slices.Contains(watchedKinds(proto.RoleStandby), k) {
			t.Errorf("a standby, active once it took over, is not subscribed to %v", k)
		}
	}
}
