package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

// BenchmarkWarmUpgrade runs the supervisor's whole flow on one box of 8
// fast-mode LAGs on the live dockerd, b.N times, between images v1 and v2
// in turn, and reports per run: the total (preflight to removal of the old
// container), a3 (the new container's standbys getting ready), the
// handover (b1+b2: cutover to the last .active), and over all runs the
// largest takeover (cutover to a LAG's first new PDU), the largest member
// gap (old teamd's last PDU to the new one's first) and the largest gap
// the peer saw between two PDUs. The peer's verdict on each run, judged
// alone three fast periods after it, must be clean: upgrades back to back
// hand over more often than once in five periods, where proto.Speakers
// would count the new speakers' first PDUs as a second train.
func BenchmarkWarmUpgrade(b *testing.B) {
	bx := newBox(b, 8, 2, dut.Version{Name: "v1"}, dut.Version{Name: "v2"})
	bx.runTeamd(b, "v1")
	var total, ready, handover []time.Duration
	var takeover, gap, peerGap time.Duration
	next := "v2"
	b.ResetTimer()
	for range b.N {
		w := mark(b, bx.Bed)
		s, err := supervisor.New(bx.Lab.Docker, supervisor.Options{Container: bx.Name, Image: bx.Images[next], Dir: bx.Dir})
		if err != nil {
			b.Fatal(err)
		}
		rep, err := s.Upgrade(context.Background(), supervisor.OpUpgrade)
		if err != nil {
			b.Fatal(err)
		}
		total = append(total, time.Duration(rep.Took))
		var h time.Duration
		for _, st := range rep.Stages {
			switch st.Stage {
			case supervisor.StageReady:
				ready = append(ready, time.Duration(st.Took))
			case supervisor.StageCutover, supervisor.StageTakeover:
				h += time.Duration(st.Took)
			}
		}
		handover = append(handover, h)
		for _, l := range rep.LAGs {
			takeover = max(takeover, time.Duration(l.Takeover))
			for _, m := range l.Members {
				gap = max(gap, time.Duration(m.Gap))
			}
		}
		next = map[string]string{"v1": "v2", "v2": "v1"}[next]
		b.StopTimer()
		v := judgeSettled(b, bx.Bed, w, "teamd-warm upgrade to "+rep.Image)
		if !v.Clean() {
			b.Fatal("the peer noticed")
		}
		peerGap = max(peerGap, v.MaxGap())
		b.StartTimer()
	}
	b.StopTimer()
	for _, d := range [][]time.Duration{total, ready, handover} {
		slices.Sort(d)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(pct(total, 50)), "total-p50-ms")
	b.ReportMetric(ms(pct(ready, 50)), "a3-p50-ms")
	b.ReportMetric(ms(pct(handover, 50)), "handover-p50-ms")
	b.ReportMetric(ms(takeover), "takeover-max-ms")
	b.ReportMetric(ms(gap), "member-gap-max-ms")
	b.ReportMetric(float64(peerGap.Milliseconds()), "peer-max-gap-ms")
	b.ReportMetric(0, "ns/op") // an upgrade's wall time is the figures above
}
