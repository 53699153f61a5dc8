package statefile_test

import (
	"bufio"
	"context"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// One hub, two LAGs' subscribers, one of every LAG and one of a LAG's
// .active alone: each LAG's pipe carries its own LAG's names and the
// cutover's, never the other LAG's nor the journal's (no shim reads it);
// the narrow one its LAG's .active alone; AllLAGs gets them all, or those
// of the kinds it names.
func TestHubRoutesByLAG(t *testing.T) {
	d, err := statefile.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := statefile.NewHub(ctx, d.Path())
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]<-chan string{}
	for _, lag := range []string{"PortChannel1", "PortChannel2", statefile.AllLAGs, "PortChannel1 active", statefile.AllLAGs + " snapshot"} {
		var r *os.File
		var err error
		if l, ok := strings.CutSuffix(lag, " active"); ok {
			r, err = h.Subscribe(l, proto.KindActive)
		} else if l, ok := strings.CutSuffix(lag, " snapshot"); ok {
			r, err = h.Subscribe(l, proto.KindSnapshot)
		} else {
			r, err = h.Subscribe(lag)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		ch := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				ch <- sc.Text()
			}
			close(ch)
		}()
		lines[lag] = ch
	}
	for _, rec := range []proto.Record{
		prototest.Snapshot("PortChannel2", 1, 2, clock),
		prototest.Snapshot("PortChannel1", 1, 2, clock),
		prototest.Journal(1, "b1", clock),
		prototest.Cutover(1, nil, clock),
		prototest.Active("PortChannel1", 2, 2, clock),
		prototest.Snapshot("PortChannel3", 1, 2, clock),
	} {
		if _, err := d.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	cutover := proto.FileName("", proto.KindCutover)
	for lag, ch := range lines {
		got := map[string]bool{}
		last := cutover // written last of what each reads
		switch {
		case strings.HasPrefix(lag, "PortChannel1"):
			last = "PortChannel1.active"
		case strings.HasPrefix(lag, statefile.AllLAGs):
			last = "PortChannel3.snapshot"
		}
		for !got[last] {
			select {
			case l, ok := <-ch:
				if !ok {
					t.Fatalf("%s: the pipe closed", lag)
				}
				got[l] = true
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no %s within 10s (%v)", lag, last, got)
			}
		}
		want := map[string]bool{lag + ".snapshot": true, cutover: true}
		switch lag {
		case "PortChannel1":
			want["PortChannel1.active"] = true
		case "PortChannel1 active":
			want = map[string]bool{"PortChannel1.active": true}
		case statefile.AllLAGs:
			want = map[string]bool{"PortChannel1.snapshot": true, "PortChannel2.snapshot": true, proto.FileName("", proto.KindJournal): true, cutover: true, "PortChannel1.active": true, "PortChannel3.snapshot": true}
		case statefile.AllLAGs + " snapshot":
			want = map[string]bool{"PortChannel1.snapshot": true, "PortChannel2.snapshot": true, "PortChannel3.snapshot": true}
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s's pipe carried %v, want %v", lag, got, want)
		}
	}
}

// The hub goes away (its owner died): the watch goes on by itself and
// still reports the records that land.
func TestWatchSharedOutlivesItsHub(t *testing.T) {
	d, err := statefile.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hubCtx, stopHub := context.WithCancel(ctx)
	h, err := statefile.NewHub(hubCtx, d.Path())
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Subscribe("PortChannel1")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := statefile.WatchShared(ctx, d.Path(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopHub()
	if _, err := h.Subscribe("PortChannel2"); err == nil {
		// The stop may not have been seen yet; it is by the next record.
		t.Log("subscribed to a hub that is stopping")
	}
	if _, err := d.Write(prototest.Snapshot("PortChannel1", 1, 2, clock)); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next(t, ch)
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		if ev.Name == "PortChannel1.snapshot" && ev.Record != nil {
			return
		}
	}
}
