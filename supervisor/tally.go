package supervisor

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// A tally reports per-LAG progress (ready at a3, taken over at b2) so that
// it reads well at any size: up to tallyEach LAGs, one line per LAG; above,
// a count at most every tallyEvery (and at the end), with how many took
// which way. The report and status list every LAG by name.
type tally struct {
	r     *run
	what  string // "ready", "taken over"
	total int
	done  []string
	ways  map[string]int // "snapshot": 98, ...
	said  time.Time
}

const (
	tallyEach  = 16
	tallyEvery = time.Second
	// tallyNames is how many of the LAGs still waited for a line names.
	tallyNames = 5
)

func (r *run) newTally(what string, total int) *tally {
	return &tally{r: r, what: what, total: total, ways: map[string]int{}}
}

// add counts lag, which went the way given ("" if there is one way).
func (t *tally) add(lag, way string) {
	t.done = append(t.done, lag)
	if way != "" {
		t.ways[way]++
	}
	switch {
	case t.total <= tallyEach && way != "":
		t.r.progress("%s %s (%s) (%d/%d)", lag, t.what, way, len(t.done), t.total)
	case t.total <= tallyEach:
		t.r.progress("%s %s (%d/%d)", lag, t.what, len(t.done), t.total)
	case len(t.done) == t.total || time.Since(t.said) >= tallyEvery:
		t.said = time.Now()
		t.r.progress("%d/%d %s%s", len(t.done), t.total, t.what, t.waysText())
	}
}

func (t *tally) waysText() string {
	if len(t.ways) == 0 {
		return ""
	}
	return " (" + countsText(t.ways) + ")"
}

// countsText lists counts by name: "deadline 2, snapshot 98".
func countsText(counts map[string]int) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, counts[name]))
	}
	return strings.Join(parts, ", ")
}

// someNames lists up to most of names, then how many more there are.
func someNames(names []string, most int) string {
	if len(names) <= most {
		return strings.Join(names, " ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], " "), len(names)-most)
}
