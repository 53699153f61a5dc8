package statefile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
)

func next(t *testing.T, ch <-chan statefile.Event) statefile.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

func TestWatch(t *testing.T) {
	d, err := statefile.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(prototest.Active("PortChannel1", 2, 2, clock)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := statefile.Watch(ctx, d.Path())
	if err != nil {
		t.Fatal(err)
	}

	// A record already there is reported first.
	ev := next(t, ch)
	if ev.Name != "PortChannel1.active" || ev.Err != nil || ev.Record.Kind() != proto.KindActive {
		t.Fatalf("existing record: got %+v", ev)
	}

	// Temp files and foreign names produce nothing; the record after them
	// is the next event.
	_ = os.WriteFile(filepath.Join(d.Path(), ".PortChannel1.snapshot.tmp-x"), []byte("partial"), 0o600)
	_ = os.WriteFile(filepath.Join(d.Path(), "Ethernet0"), make([]byte, 124), 0o600)
	if _, err := d.Write(prototest.Snapshot("PortChannel1", 1, 2, clock)); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	snap, ok := ev.Record.(*proto.Snapshot)
	if !ok || ev.Err != nil || len(snap.Members) != 2 {
		t.Fatalf("new snapshot: got %+v", ev)
	}
	// The event names the version it read, so that its reader need not
	// read that version again.
	if v, err := statefile.VersionOf(ev.Path); err != nil || v != ev.Version {
		t.Errorf("event's version %+v, the file's %+v (%v)", ev.Version, v, err)
	}

	// A corrupt record is reported with its error, not dropped.
	if err := os.WriteFile(filepath.Join(d.Path(), "PortChannel2.snapshot"), []byte("TDWRgarbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	for ev.Name == "PortChannel2.snapshot" && ev.Err == nil {
		ev = next(t, ch) // a create event can arrive before the write
	}
	if ev.Name != "PortChannel2.snapshot" || !errors.Is(ev.Err, statefile.ErrCorrupt) {
		t.Fatalf("corrupt record: got %+v", ev)
	}

	// Removal is reported.
	if err := d.Remove("PortChannel1", proto.KindSnapshot); err != nil {
		t.Fatal(err)
	}
	for {
		ev = next(t, ch)
		if ev.Name == "PortChannel1.snapshot" {
			break
		}
	}
	if !ev.Removed || ev.Version != (statefile.Version{}) {
		t.Fatalf("removal: got %+v", ev)
	}

	cancel()
	for range ch {
	}
}
