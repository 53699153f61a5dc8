package teamdshim

import (
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// A shim takes init's watch at its word for a version of the LAG's .active
// (the watch read it): it reads the file itself only once it changed.
func TestNewerActiveReadsEachVersionOnce(t *testing.T) {
	clock := prototest.DefaultClock
	d, err := statefile.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(epoch uint64) statefile.Version {
		t.Helper()
		p, err := d.Write(prototest.Active("PortChannel1", epoch, 2, clock))
		if err != nil {
			t.Fatal(err)
		}
		v, err := statefile.VersionOf(p)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	epochOf := func(a *proto.Active) uint64 {
		if a == nil {
			return 0
		}
		return a.Epoch
	}
	s := &Shim{lag: "PortChannel1", epoch: 2, dir: d}

	v := write(2)
	if a := s.newerActive(); a != nil {
		t.Fatalf("own epoch's .active: newer epoch %d", a.Epoch)
	}
	// An event about the version there: believed, not read. (Its record
	// differs from the file's only so that the test can tell.)
	s.noteActive(statefile.Event{Name: "PortChannel1.active", LAG: "PortChannel1", Kind: proto.KindActive, Version: v, Record: prototest.Active("PortChannel1", 3, 2, clock)})
	if got := epochOf(s.newerActive()); got != 3 {
		t.Fatalf("after the event: newer epoch %d, want the event's 3", got)
	}
	// A new version is read.
	write(2)
	if got := epochOf(s.newerActive()); got != 0 {
		t.Fatalf("after a rewrite at the own epoch: newer epoch %d, want none", got)
	}
	write(4)
	if got := epochOf(s.newerActive()); got != 4 {
		t.Fatalf("after a newer epoch's write: newer epoch %d, want 4", got)
	}
	// A removal event forgets the version: the next look reads.
	s.noteActive(statefile.Event{Name: "PortChannel1.active", LAG: "PortChannel1", Kind: proto.KindActive, Removed: true})
	if got := epochOf(s.newerActive()); got != 4 {
		t.Fatalf("after a stale removal event: newer epoch %d, want the file's 4", got)
	}
}
