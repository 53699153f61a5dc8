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
// PDUs than one speaker sends in it (six periodic ones and two more for
// state changes), or holds three or more intervals shorter than a quarter
// period (one speaker sends a change PDU right after a periodic one at
// most twice around a handoff: the old one's parting PDU and the new
// one's first). An overlap shorter than about four periods can go unseen.
func Speakers(at []time.Time, period time.Duration) (two bool, why string) {
	window := 5 * period
	const most = 8 // 6 periodic + 2 change PDUs
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
			if len(short) >= 3 {
				return true, fmt.Sprintf("%d PDUs less than %v after the one before within %v, the last at %s", len(short), period/4, window, at[i].Format("15:04:05.000"))
			}
		}
	}
	return false, ""
}
