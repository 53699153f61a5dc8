package supervisor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// The text report of a switch's size reads in a screen's height: the
// kernel's reason is said once under the table, not on every LAG's line,
// and the largest gaps are named.
func TestWriteTextSumsUpALargeTable(t *testing.T) {
	const noTeam = "teamnl: the kernel has no team generic netlink family (team.ko not loaded)"
	lags := func(n int, mod func(i int, l *LAGReport)) []LAGReport {
		var out []LAGReport
		for i := range n {
			l := LAGReport{LAG: fmt.Sprintf("PortChannel%d", i+1), Rate: "fast", Path: proto.PathSnapshot, Result: LAGOK,
				Takeover: Millis(30 * time.Millisecond), Kernel: "unchanged"}
			for j := range 2 {
				l.Members = append(l.Members, MemberReport{Name: fmt.Sprintf("Ethernet%d", 8*i+4*j),
					Gap: Millis(time.Duration(10+i) * time.Millisecond), GapFrom: "last-pdu"})
			}
			if mod != nil {
				mod(i, &l)
			}
			out = append(out, l)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		lags      []LAGReport
		want, not []string
	}{
		{
			name: "every kernel unknown alike",
			lags: lags(20, func(i int, l *LAGReport) { l.Kernel = kernelUnknown + " (" + noTeam + ")" }),
			want: []string{
				"20 LAGs: ok 20; paths: snapshot 20\n",
				"largest gaps: Ethernet152 on PortChannel20 29ms, Ethernet144 on PortChannel19 28ms, Ethernet136 on PortChannel18 27ms, Ethernet128 on PortChannel17 26ms, Ethernet120 on PortChannel16 25ms\n",
				"kernel unknown for every LAG (20): " + noTeam + "\n",
			},
			not: []string{"unknown (" + noTeam},
		},
		{
			name: "a few results and reasons",
			lags: lags(20, func(i int, l *LAGReport) {
				switch {
				case i == 2:
					l.Path, l.Result, l.Takeover, l.Kernel = "", LAGNoTakeover, 0, ""
					l.Members[0].Gap, l.Members[1].Gap = 0, 0
				case i == 3:
					l.Path, l.Kernel = proto.PathDeadline, kernelUnknown+" (not recorded)"
					l.Members[0].Gap, l.Members[0].GapFrom = Millis(2*time.Second), "cutover"
				case i >= 10:
					l.Kernel = kernelUnknown + " (" + noTeam + ")"
				}
			}),
			want: []string{
				"20 LAGs: no-takeover 1, ok 19; paths: deadline 1, snapshot 18\n",
				"largest gaps: Ethernet24 on PortChannel4 2s (from cutover), Ethernet152 on PortChannel20 29ms, Ethernet144 on PortChannel19 28ms,",
				"kernel unknown for 10 LAGs (PortChannel11 PortChannel12 PortChannel13 PortChannel14 PortChannel15 and 5 more): " + noTeam + "\n" +
					"kernel unknown for PortChannel4: not recorded\n",
			},
		},
		{
			// A table short enough to read: no counts, but the reason once.
			name: "two LAGs",
			lags: lags(2, func(i int, l *LAGReport) {
				if i == 1 {
					l.Kernel = kernelUnknown + " (" + noTeam + ")"
				}
			}),
			want: []string{"kernel unknown for PortChannel2: " + noTeam + "\n"},
			not:  []string{"LAGs:", "largest gaps", "unknown (" + noTeam},
		},
		{
			// Before the cutover the table is the preflight's: nothing to sum up.
			name: "refused",
			lags: lags(20, func(i int, l *LAGReport) { l.Path, l.Result, l.Takeover, l.Kernel = "", "", 0, "" }),
			not:  []string{"LAGs:", "largest gaps", "kernel unknown"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &Report{Operation: "upgrade", Container: "teamd", Image: "docker-teamd:v2", Result: ResultOK, LAGs: tc.lags}
			var b strings.Builder
			if err := rep.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			text := b.String()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("missing %q in:\n%s", w, text)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(text, n) {
					t.Errorf("%q in:\n%s", n, text)
				}
			}
			if lines := strings.Count(text, "\n"); lines > 2*len(tc.lags)+6 {
				t.Errorf("%d lines for %d LAGs of 2 members:\n%s", lines, len(tc.lags), text)
			}
		})
	}
}

func TestKernelUnknownWhy(t *testing.T) {
	for _, tc := range []struct {
		verdict, why string
		ok           bool
	}{
		{"unknown (no team family (team.ko not loaded))", "no team family (team.ko not loaded)", true},
		{"unknown (not recorded)", "not recorded", true},
		{"unchanged", "", false},
		{"changed: Ethernet4 enabled: on -> off", "", false},
		{"", "", false},
	} {
		why, ok := kernelUnknownWhy(tc.verdict)
		if why != tc.why || ok != tc.ok {
			t.Errorf("kernelUnknownWhy(%q) = %q, %v; want %q, %v", tc.verdict, why, ok, tc.why, tc.ok)
		}
	}
}
