package integration

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
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
	w := mark(t, b)
	time.Sleep(3 * time.Second) // the window under observation
	if v := judge(t, b, w, "steady state"); !v.Clean() {
		t.Fatal("steady state is not clean")
	}
}

// judge ends a window and logs the verdict table.
func judge(t testing.TB, b *testbed.Bed, w testbed.Window, title string) testbed.Verdict {
	t.Helper()
	v, err := b.Judge(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	_ = v.WriteTable(&sb)
	t.Logf("%s (largest gap %v):\n%s", title, v.MaxGap().Round(time.Millisecond), sb.String())
	return v
}

// judgeSettled judges the window once three fast periods have passed
// since now, so that an expiry the test caused shows.
func judgeSettled(t testing.TB, b *testbed.Bed, w testbed.Window, title string) testbed.Verdict {
	t.Helper()
	time.Sleep(3500 * time.Millisecond) // the peer's expiry is a timeout: nothing to wait on
	return judge(t, b, w, title)
}

func mark(t testing.TB, b *testbed.Bed) testbed.Window {
	t.Helper()
	w, err := b.Mark(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func negotiated(t testing.TB, b *testbed.Bed) {
	t.Helper()
	if err := b.WaitNegotiated(context.Background(), 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A frozen teamd is what the project exists to avoid: the peer must expire
// the members about 3 s after the last PDU, and the verdict must say so.
func TestIntegrationFreezeIsDetected(t *testing.T) {
	b := newBed(t, 1, 2)
	s := startSim(t, b, b.LAGs[0], simOpts{})
	negotiated(t, b)
	w := mark(t, b)
	s.signal(syscall.SIGSTOP)
	time.Sleep(4 * time.Second) // the freeze under test
	s.signal(syscall.SIGCONT)
	negotiated(t, b)
	v := judge(t, b, w, "teamd frozen for 4s")
	if v.Clean() {
		t.Fatal("verdict is clean after a 4s freeze: the detector is broken")
	}
	for _, m := range v.Members {
		if m.ExpiredDelta < 1 {
			t.Errorf("%s: peer's expired counter did not move", m.Member)
		}
		if m.MaxGap < 3*time.Second {
			t.Errorf("%s: largest gap %v, want at least the 3s expiry", m.Member, m.MaxGap)
		}
		if len(m.OVSEvents) == 0 {
			t.Errorf("%s: no OVS log line about the member", m.Member)
		}
	}
}

// A replacement teamd started without state sends a first PDU without Sync;
// the verdict must report it.
func TestIntegrationStatelessReplacementIsDetected(t *testing.T) {
	b := newBed(t, 1, 2)
	old := startSim(t, b, b.LAGs[0], simOpts{})
	negotiated(t, b)
	w := mark(t, b)
	old.signal(syscall.SIGKILL) // no goodbye PDU: only the replacement can be blamed
	old.waitExit(t, 5*time.Second)
	repl := startSim(t, b, b.LAGs[0], simOpts{})
	repl.waitState(t, 10*time.Second, allCurrent)
	negotiated(t, b)
	v := judge(t, b, w, "stateless replacement")
	for _, m := range v.Members {
		if m.OutOfSync == 0 {
			t.Errorf("%s: the replacement's PDU without sync was not reported", m.Member)
			for _, p := range b.Observer().PDUs(m.Peer, w.From, time.Now()) {
				t.Logf("  %s %v", p.At.Format("15:04:05.000"), p.PDU.Actor.State)
			}
		}
	}
	if v.Clean() {
		t.Fatal("verdict is clean after a stateless replacement")
	}
}

// The HLD's handoff done by hand: SIGUSR1 to the old stand-in, the takeover
// signal to a passive one started with -w. The peer must not notice.
func TestIntegrationHandoffByHand(t *testing.T) {
	// SIGRTMIN+1, not SIGRTMIN: the stand-in is a Go program, and Go
	// reserves signal 34 (glibc's SIGRTMIN); a C teamd has no such limit.
	for _, sig := range []string{"SIGUSR2", "SIGRTMIN+1"} {
		t.Run(sig, func(t *testing.T) {
			b := newBed(t, 2, 2)
			dump := t.TempDir()
			var olds, news []*sim
			for _, l := range b.LAGs {
				olds = append(olds, startSim(t, b, l, simOpts{dumpDir: dump}))
			}
			negotiated(t, b)
			for _, l := range b.LAGs {
				news = append(news, startSim(t, b, l, simOpts{passive: true, dumpDir: dump, takeover: sig}))
			}
			for _, n := range news {
				n.waitState(t, 10*time.Second, allCurrent) // the standby hears the partner
			}
			w := mark(t, b)
			takeover, _ := signame.Parse(sig)
			for i := range olds {
				olds[i].signal(syscall.SIGUSR1)
				olds[i].waitExit(t, 3*time.Second)
				news[i].signal(takeover)
			}
			// Three fast periods after the handoff: long enough for any
			// expiry the handoff caused to show.
			v := judgeSettled(t, b, w, "handoff by hand with "+sig)
			if !v.Clean() {
				t.Fatal("the peer noticed the handoff")
			}
			// The old process left SONiC's dump files; the new one read and
			// removed them, as teamd -w does.
			if left, _ := os.ReadDir(dump); len(left) != 0 {
				t.Errorf("dump files not consumed by the new stand-in: %d left", len(left))
			}
		})
	}
}

// The passive standby transmits nothing, however long it listens.
func TestIntegrationWarmStandbyIsSilent(t *testing.T) {
	b := newBed(t, 1, 2)
	w := mark(t, b)
	s := startSim(t, b, b.LAGs[0], simOpts{passive: true})
	st := s.waitState(t, 10*time.Second, allCurrent) // it has heard OVS...
	m := b.LAGs[0].Members[0]
	if n := len(b.Observer().PDUs(m.Peer, w.From, time.Now())); n != 0 {
		t.Fatalf("passive standby sent %d PDUs", n)
	}
	// ...and knows what it would say.
	a, _ := st.Ports[m.DUT].Runner.ActorLACPDUInfo.Info()
	if !a.State.Has(proto.StateSync) {
		t.Fatalf("standby would not advertise sync: %v", a.State)
	}
}

// A malformed LACPDU on the wire is dropped and the session goes on.
func TestIntegrationMalformedFrameKeepsSession(t *testing.T) {
	b := newBed(t, 1, 2)
	s := startSim(t, b, b.LAGs[0], simOpts{})
	negotiated(t, b)
	w := mark(t, b)
	m := b.LAGs[0].Members[0]
	bad := make([]byte, proto.FrameLen)
	copy(bad, proto.SlowProtocolsMAC[:])
	copy(bad[6:], []byte{0x02, 0xba, 0xd0, 0, 0, 1})
	bad[12], bad[13], bad[14], bad[15] = 0x88, 0x09, 1, 1
	bad[16], bad[17] = 1, 0x13 // actor_info_len 0x13: teamd's lacpdu_check rejects it
	err := testbed.InNetns(b.PEER, func() error {
		c, err := lacpsock.Listen(m.Peer)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Write(bad)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the stand-in to have seen it, then for two more periods.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.log.String(), "malformed LACPDU dropped") {
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in did not report the malformed frame:\n%s", s.log.String())
		}
		time.Sleep(20 * time.Millisecond) // its log is the only signal
	}
	time.Sleep(2500 * time.Millisecond)
	if v := judge(t, b, w, "after a malformed frame"); !v.Clean() {
		t.Fatal("the session suffered from a malformed frame")
	}
	s.waitState(t, time.Second, allCurrent)
}
