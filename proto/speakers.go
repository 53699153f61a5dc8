package proto

import (
	"fmt"
	"time"
)

// Speakers looks at when LACPDUs of one actor arrived on one member (in
// order) and says whether more than one speaker sent them. Both speakers
// of a botched handoff send the same actor information, so only the
// timing tells them apart: a speaker sends one PDU per period (the 1 s
// fast period, or 30 s) and a few more when the state changes; two send
// twice as many, in two interleaved trains. period is the period the
// partner asked for.
//
// Two speakers are reported when some stretch of five periods holds more
// PDUs than one speaker sends in it (six periodic ones, two more for state
// changes, and one for a handoff that lands right after the old speaker's
// periodic PDU, as teamdwarm's does: the new speaker's first then adds to
// the old one's, where a handoff at a random moment replaced one; two
// trains send ten or more), or holds intervals shorter than a quarter period in four
// or more bursts (short intervals less than half a period apart are one
// burst). One speaker sends short intervals only in bursts: at bring-up,
// and around a handoff (the old one's last periodic PDU, its parting PDU,
// the new one's first and the change PDUs that follow, all within a
// period: seen on the real kernel); two trains close together give a short
// interval every period. An overlap shorter than about four periods can go
// unseen.
func Speakers(at []time.Time, period time.Duration) (two bool, why string) {
	window := 5 * period
	const most = 9 // 6 periodic + 2 change PDUs + the new speaker's first, right after the old one's last
	j := 0
	for i := range at {
		for at[i].Sub(at[j]) >= window {
			j++
		}
		if n := i - j + 1; n > most {
			return true, fmt.Sprintf("%d PDUs within %v (one speaker sends at most %d), the last at %s", n, window, most, at[i].Format("15:04:05.000"))
		}
	}
	var short []time.Time
	for i := 1; i < len(at); i++ {
		if at[i].Sub(at[i-1]) < period/4 {
			short = append(short, at[i])
			for len(short) > 0 && at[i].Sub(short[0]) >= window {
				short = short[1:]
			}
			if n := bursts(short, period/2); n >= 4 {
				return true, fmt.Sprintf("%d PDUs less than %v after the one before, in %d bursts within %v, the last at %s",
					len(short), period/4, n, window, at[i].Format("15:04:05.000"))
			}
		}
	}
	return false, ""
}

// bursts counts the groups of at (in order) whose members follow the
// group's first by less than apart.
func bursts(at []time.Time, apart time.Duration) int {
	n := 0
	var first time.Time
	for _, t := range at {
		if n == 0 || t.Sub(first) >= apart {
			n, first = n+1, t
		}
	}
	return n
}
