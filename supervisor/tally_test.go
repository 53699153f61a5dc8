package supervisor

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Progress per LAG reads well at any size: a line per LAG for a few, a
// count (with the ways taken) for many.
func TestTally(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lags  int
		way   string
		lines []string
	}{
		{"two LAGs, one line each", 2, "snapshot", []string{"PortChannel1 taken over (snapshot) (1/2)", "PortChannel2 taken over (snapshot) (2/2)"}},
		{"two LAGs, no way", 2, "", []string{"PortChannel1 taken over (1/2)", "PortChannel2 taken over (2/2)"}},
		// Added within a second: the first count, then the last.
		{"128 LAGs, counts", 128, "snapshot", []string{"1/128 taken over (snapshot 1)", "128/128 taken over (snapshot 128)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			r := &run{s: &Supervisor{opts: Options{Logger: slog.New(slog.DiscardHandler), Progress: func(st Step) { got = append(got, st.Message) }}}}
			tl := r.newTally("taken over", tc.lags)
			for i := range tc.lags {
				tl.add(fmt.Sprintf("PortChannel%d", i+1), tc.way)
			}
			if strings.Join(got, "\n") != strings.Join(tc.lines, "\n") {
				t.Errorf("progress:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.lines, "\n"))
			}
		})
	}
}

func TestSomeNames(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, ""},
		{[]string{"a", "b"}, "a b"},
		{[]string{"a", "b", "c", "d"}, "a b and 2 more"},
	} {
		if got := someNames(tc.names, 2); got != tc.want {
			t.Errorf("someNames(%q, 2) = %q, want %q", tc.names, got, tc.want)
		}
	}
}
