package proto

import "strings"

// State is the actor or partner state octet of a LACPDU (802.1AX 6.4.2.3).
type State uint8

// The state bits, least significant first.
const (
	StateActivity     State = 1 << iota // LACP_Activity: active LACP
	StateTimeout                        // LACP_Timeout: short (fast, 1 s) timeout
	StateAggregation                    // the link may be aggregated
	StateSync                           // Synchronization: in the right aggregator
	StateCollecting                     // collecting frames
	StateDistributing                   // distributing frames
	StateDefaulted                      // using defaulted partner information
	StateExpired                        // receive machine is in EXPIRED
)

var stateNames = [8]string{"activity", "timeout", "aggregation", "sync", "collecting", "distributing", "defaulted", "expired"}

// InService is the set of bits a member carrying traffic advertises.
const InService = StateSync | StateCollecting | StateDistributing

// Has reports whether all bits of b are set in s.
func (s State) Has(b State) bool { return s&b == b }

// String lists the set bits joined by "|", e.g.
// "activity|timeout|aggregation|sync|collecting|distributing", or "none".
func (s State) String() string {
	if s == 0 {
		return "none"
	}
	var b strings.Builder
	for i, name := range stateNames {
		if s&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString(name)
	}
	return b.String()
}
