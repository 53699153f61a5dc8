package teamdshim

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// Paused, the watch is not woken by the PDUs that leave (they wait in the
// kernel), latest still sees the last of them, and wait reads on from the
// queue: here on loopback, where a frame sent is queued on the watch by
// the time the send returns (other tests' PDUs there only come on top).
func TestOutgoingPaused(t *testing.T) {
	tx, err := lacpsock.Listen("lo")
	if errors.Is(err, unix.EPERM) {
		t.Skip("needs CAP_NET_RAW")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	send := func() {
		t.Helper()
		frame, err := (&proto.LACPDU{Dst: proto.SlowProtocolsMAC}).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	o := watchOutgoing([]string{"lo"}, slog.New(slog.DiscardHandler))
	defer o.close()
	if len(o.conns) != 1 {
		t.Fatal("lo is not watched")
	}
	o.pause()
	select {
	case <-o.notify: // another test's PDU on loopback, read before the pause
	default:
	}

	before := time.Now()
	send()
	select {
	case <-o.notify:
		t.Fatal("paused, a PDU sent was read as it came")
	default:
	}
	if last := o.latest(); last.Before(before) {
		t.Errorf("latest %v, want the PDU sent at or after %v", last, before)
	}

	since := time.Now()
	send() // queued: wait must find it there
	at, err := o.wait(since, 5*time.Second, nil)
	if err != nil || at.Before(since) {
		t.Errorf("wait: %v at %v, want the PDU sent after %v", err, at, since)
	}
}
