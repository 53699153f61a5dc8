package lacpsock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// Interface agrees with the standard library's (full dump) view of every
// interface of this namespace.
func TestInterfaceAgreesWithNet(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Fatalf("net.Interfaces: %v (%d)", err, len(ifs))
	}
	for _, want := range ifs {
		got, err := Interface(want.Name)
		if err != nil {
			t.Errorf("%s: %v", want.Name, err)
			continue
		}
		if got.Index != want.Index || got.Up != (want.Flags&net.FlagUp != 0) {
			t.Errorf("%s: index %d up %v, want %d %v", want.Name, got.Index, got.Up, want.Index, want.Flags&net.FlagUp != 0)
		}
		if len(want.HardwareAddr) == 6 && !bytes.Equal(got.MAC[:], want.HardwareAddr) {
			t.Errorf("%s: MAC %x, want %s", want.Name, got.MAC, want.HardwareAddr)
		}
	}
	if _, err := Interface("nosuch0"); !errors.Is(err, unix.ENODEV) {
		t.Errorf("a missing interface: %v, want ENODEV", err)
	}
}

// SentIn opens its socket in the namespace named, and NextRound returns
// once a LACPDU has left after it was called: here on loopback, in this
// process's own namespace, reached by its path.
func TestSentInAndNextRound(t *testing.T) {
	w, err := SentIn(fmt.Sprintf("/proc/%d/ns/net", os.Getpid()), "lo")
	if errors.Is(err, unix.EPERM) {
		t.Skip("needs CAP_NET_RAW and CAP_SYS_ADMIN")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tx, err := Listen("lo")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	pdu := proto.LACPDU{Dst: proto.SlowProtocolsMAC}
	frame, err := pdu.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	sending, stop := context.WithCancel(ctx)
	sent := make(chan error, 1)
	go func() { // a PDU every 10 ms, as a speaker's train, until the round is seen
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := tx.Write(frame); err != nil {
				sent <- err
				return
			}
			select {
			case <-sending.Done():
				sent <- nil
				return
			case <-tick.C:
			}
		}
	}()
	at, err := NextRound(ctx, []*Conn{w})
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if at.Before(start) {
		t.Errorf("the round's PDU left at %v, before NextRound was called at %v", at, start)
	}

	// None at all: the context's end, naming the interface.
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := NextRound(short, []*Conn{w}); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no PDU: %v, want the deadline", err)
	}
	if _, err := SentIn("/nonexistent/ns", "lo"); err == nil {
		t.Error("a namespace that does not exist: no error")
	}
}

// Sent sees the frames this host sends and none it receives: on loopback,
// where every frame sent also comes back in, two frames sent one after the
// other reach a Sent socket as the two frames, each once, both outgoing.
func TestSentSeesOnlyOutgoing(t *testing.T) {
	sent, err := Sent("lo")
	if errors.Is(err, unix.EPERM) {
		t.Skip("needs CAP_NET_RAW")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sent.Close()
	tx, err := Listen("lo")
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	for key := uint16(1); key <= 2; key++ {
		pdu := proto.LACPDU{Dst: proto.SlowProtocolsMAC}
		pdu.Actor.Key = key
		frame, err := pdu.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1600)
	for want := uint16(1); want <= 2; want++ {
		fr, err := sent.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		pdu, err := proto.ParseLACPDU(fr.Data)
		if err != nil {
			t.Fatal(err)
		}
		if pdu.Actor.Key != want || !fr.Outgoing {
			t.Errorf("frame %d: actor key %d, outgoing %v; want key %d, outgoing", want, pdu.Actor.Key, fr.Outgoing, want)
		}
	}
}
