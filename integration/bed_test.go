package integration

import (
	"context"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

func TestIntegrationNegotiate(t *testing.T) {
	b := newBed(t, 3, 2)
	var sims []*sim
	for _, l := range b.LAGs {
		sims = append(sims, startSim(t, b, l, simOpts{}))
	}
	ctx := context.Background()
	if err := b.WaitNegotiated(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// Both sides collecting/distributing: OVS says enabled above; the
	// stand-ins say so in their StateDump.
	for _, s := range sims {
		st := s.waitState(t, 5*time.Second, allCurrent)
		for name, p := range st.Ports {
			a, err := p.Runner.ActorLACPDUInfo.Info()
			if err != nil {
				t.Fatal(err)
			}
			if !p.Runner.Selected || !a.State.Has(proto.InService) {
				t.Errorf("%s %s: selected=%v actor state %v", s.lag.Name, name, p.Runner.Selected, a.State)
			}
		}
	}
	w, err := b.Mark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the window under observation
	v, err := b.Judge(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	var sb stringsBuilder
	v.WriteTable(&sb)
	t.Logf("steady state:\n%s", sb.String())
	if !v.Clean() {
		t.Fatal("steady state is not clean")
	}
}
