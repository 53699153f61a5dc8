package proto

import (
	"strings"
	"testing"
	"time"
)

func TestSpeakers(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	train := func(start, period time.Duration, n int) []time.Time {
		var out []time.Time
		for i := range n {
			out = append(out, t0.Add(start+time.Duration(i)*period))
		}
		return out
	}
	merge := func(a, b []time.Time) []time.Time {
		var out []time.Time
		for len(a) > 0 || len(b) > 0 {
			if len(b) == 0 || (len(a) > 0 && a[0].Before(b[0])) {
				out, a = append(out, a[0]), a[1:]
			} else {
				out, b = append(out, b[0]), b[1:]
			}
		}
		return out
	}
	one := train(0, time.Second, 20)
	// A handoff: the old speaker's parting PDU 30 ms after a periodic one,
	// the new one's first 300 ms later, then its own train.
	handoff := merge(train(0, time.Second, 10), append([]time.Time{t0.Add(9*time.Second + 30*time.Millisecond)}, train(9330*time.Millisecond, time.Second, 10)...))
	// The real kernel's slower handoff (the lab, under emulation): the old
	// speaker's periodic PDU, its parting PDU 120 ms later, the new one's
	// first 220 ms after that and a change PDU 230 ms later.
	burst := merge(train(0, time.Second, 10), append([]time.Time{
		t0.Add(9*time.Second + 120*time.Millisecond), t0.Add(9*time.Second + 340*time.Millisecond),
	}, train(9570*time.Millisecond, time.Second, 10)...))
	// Change PDUs after a periodic one, then a slow handoff five periods
	// later: two bursts of one speaker.
	bursty := merge(train(0, time.Second, 10), []time.Time{t0.Add(4080 * time.Millisecond), t0.Add(4150 * time.Millisecond),
		t0.Add(9120 * time.Millisecond), t0.Add(9340 * time.Millisecond)})
	bursty = append(bursty, train(9570*time.Millisecond, time.Second, 10)...)
	// The lab's real teamd handing over right after its periodic PDU
	// (SONiC's to teamdwarm's, under emulation): a change PDU of the old
	// speaker, its last periodic one, the new one's first 9 ms later and
	// two change PDUs, then the new train.
	aligned := []time.Time{t0, t0.Add(220 * time.Millisecond), t0.Add(1220 * time.Millisecond), t0.Add(2220 * time.Millisecond),
		t0.Add(2229 * time.Millisecond), t0.Add(2321 * time.Millisecond), t0.Add(2485 * time.Millisecond)}
	aligned = append(aligned, train(3484*time.Millisecond, time.Second, 10)...)
	for _, tc := range []struct {
		name   string
		at     []time.Time
		period time.Duration
		two    bool
		why    string
	}{
		{"one speaker", one, time.Second, false, ""},
		{"one speaker with jitter", merge(train(0, 990*time.Millisecond, 10), train(10*time.Second, 1010*time.Millisecond, 10)), time.Second, false, ""},
		{"a handoff", handoff, time.Second, false, ""},
		{"a slow handoff's burst", burst, time.Second, false, ""},
		{"bring-up, then a slow handoff", bursty, time.Second, false, ""},
		{"a handoff right after the old speaker's PDU", aligned, time.Second, false, ""},
		{"two, half a period apart", merge(train(0, time.Second, 20), train(500*time.Millisecond, time.Second, 20)), time.Second, true, "PDUs within 5s"},
		{"two, close together, briefly", merge(train(0, time.Second, 4), train(100*time.Millisecond, time.Second, 4)), time.Second, true, "less than 250ms after the one before, in 4 bursts"},
		{"two, slow period", merge(train(0, 30*time.Second, 10), train(15*time.Second, 30*time.Second, 10)), 30 * time.Second, true, "PDUs within 2m30s"},
		{"one, slow period", train(0, 30*time.Second, 10), 30 * time.Second, false, ""},
		{"nothing", nil, time.Second, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			two, why := Speakers(tc.at, tc.period)
			if two != tc.two || !strings.Contains(why, tc.why) {
				t.Errorf("two %v (%s), want %v (%s)", two, why, tc.two, tc.why)
			}
		})
	}
}
