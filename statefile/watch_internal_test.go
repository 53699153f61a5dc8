package statefile

import (
	"context"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
)

// TestRescan covers what an inotify overflow triggers: a rescan reports each
// new version once, nothing for unchanged files, and removals.
func TestRescan(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := prototest.DefaultClock
	for _, lag := range []string{"PortChannel1", "PortChannel2"} {
		if _, err := d.Write(prototest.Standby(lag, 2, 1, c)); err != nil {
			t.Fatal(err)
		}
	}
	out := make(chan Event, 16)
	s := scanner{ctx: context.Background(), dir: d.Path(), seen: map[string]Version{}, out: out}
	drain := func() []Event {
		var evs []Event
		for {
			select {
			case ev := <-out:
				evs = append(evs, ev)
			default:
				return evs
			}
		}
	}
	s.rescan()
	if n := len(drain()); n != 2 {
		t.Fatalf("first scan: want 2 events, got %d", n)
	}
	s.rescan()
	if evs := drain(); len(evs) != 0 {
		t.Fatalf("unchanged rescan: want no events, got %+v", evs)
	}
	if _, err := d.Write(prototest.Standby("PortChannel1", 3, 1, c)); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("PortChannel2", proto.KindStandby); err != nil {
		t.Fatal(err)
	}
	s.rescan()
	evs := drain()
	if len(evs) != 2 {
		t.Fatalf("after a rewrite and a removal: want 2 events, got %+v", evs)
	}
	for _, ev := range evs {
		switch ev.Name {
		case "PortChannel1.standby":
			if ev.Record == nil || ev.Record.RecordEpoch() != 3 {
				t.Errorf("rewrite: got %+v", ev)
			}
		case "PortChannel2.standby":
			if !ev.Removed {
				t.Errorf("removal: got %+v", ev)
			}
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
}
