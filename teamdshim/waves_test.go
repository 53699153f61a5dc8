package teamdshim

import (
	"fmt"
	"testing"
	"time"
)

// A standby container's shims start a window at a time: one more for each
// that gets ready, a whole window more when none did for a while.
func TestWavesStartAWindowAtATime(t *testing.T) {
	var configs []LAGConfig
	for i := range 3*startWindow - 8 {
		configs = append(configs, LAGConfig{LAG: fmt.Sprintf("PortChannel%d", i+1)})
	}
	var started []string
	launch := func(c LAGConfig) { started = append(started, c.LAG) }
	unsubscribed := false
	w := &waves{pending: configs, starting: map[string]bool{}, ready: make(chan string), timer: time.NewTimer(startStall), launch: launch,
		unsubscribe: func() { unsubscribed = true }}
	w.startMore()
	if len(started) != startWindow {
		t.Fatalf("first wave: %d started, want %d", len(started), startWindow)
	}
	delete(w.starting, "PortChannel3") // ready
	w.startMore()
	if next := fmt.Sprintf("PortChannel%d", startWindow+1); len(started) != startWindow+1 || started[len(started)-1] != next {
		t.Fatalf("after one ready: %d started, the last %s", len(started), started[len(started)-1])
	}
	clear(w.starting) // stalled
	w.startMore()
	if len(started) != 2*startWindow+1 {
		t.Fatalf("after a stall: %d started, want %d", len(started), 2*startWindow+1)
	}
	if w.stall() == nil || unsubscribed {
		t.Fatalf("while shims wait to start: stall timer %v, unsubscribed %v", w.stall(), unsubscribed)
	}
	// The last wave: the readiness subscription ends with it.
	clear(w.starting)
	w.startMore()
	if len(started) != len(configs) || !unsubscribed || w.ready != nil || w.stall() != nil {
		t.Fatalf("after the last wave: %d of %d started, unsubscribed %v, still waiting for readiness %v",
			len(started), len(configs), unsubscribed, w.ready != nil || w.stall() != nil)
	}

	// Without readiness events (an active container), every shim at once.
	started = nil
	all := &waves{pending: configs, starting: map[string]bool{}, launch: launch}
	all.startMore()
	if len(started) != len(configs) || all.stall() != nil {
		t.Fatalf("active container: %d started, want %d", len(started), len(configs))
	}
}
