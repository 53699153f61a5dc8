package lacpsock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"slices"
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
	tx := onLo(t, Listen)
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
	sent, tx := onLo(t, Sent), onLo(t, Listen)
	sendKeys(t, tx, 1, 2)
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
		if pdu.Actor.System != testSystem(t) {
			want-- // another test's
			continue
		}
		if pdu.Actor.Key != want || !fr.Outgoing {
			t.Errorf("frame %d: actor key %d, outgoing %v; want key %d, outgoing", want, pdu.Actor.Key, fr.Outgoing, want)
		}
	}
}

// onLo opens a socket on loopback with open, closed when the test ends;
// without CAP_NET_RAW the test is skipped.
func onLo(t *testing.T, open func(ifname string) (*Conn, error)) *Conn {
	t.Helper()
	c, err := open("lo")
	if errors.Is(err, unix.EPERM) {
		t.Skip("needs CAP_NET_RAW")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testSystem is the actor system of the test's PDUs: other tests (other
// packages' too, run in parallel) send LACPDUs on loopback as well, and
// the tests that count frames count only their own.
func testSystem(t *testing.T) proto.MAC {
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	sum := h.Sum32()
	return proto.MAC{0x02, 0x7e, byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)}
}

// sendKeys sends one LACPDU per actor key on tx, from testSystem.
func sendKeys(t *testing.T, tx *Conn, keys ...uint16) {
	t.Helper()
	for _, key := range keys {
		pdu := proto.LACPDU{Dst: proto.SlowProtocolsMAC}
		pdu.Actor.System, pdu.Actor.Key = testSystem(t), key
		frame, err := pdu.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
}

// drained is what one Drain of c read: each frame's actor key, and
// whether it was outgoing.
type drained struct {
	key      uint16
	outgoing bool
}

func drain(t *testing.T, c *Conn) (got []drained, lost bool) {
	t.Helper()
	lost, err := c.Drain(make([]byte, 1600), func(fr Frame) {
		pdu, err := proto.ParseLACPDU(fr.Data)
		if err != nil {
			t.Errorf("drained a frame that is no LACPDU: %v", err)
			return
		}
		if pdu.Actor.System == testSystem(t) {
			got = append(got, drained{pdu.Actor.Key, fr.Outgoing})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, lost
}

// Drain reads what is queued, in order, and returns without waiting for
// more; it says when the kernel dropped frames because the queue was full,
// and only for the Drain after the drops. On loopback a frame sent has
// reached a Sent socket by the time the send returns.
func TestDrain(t *testing.T) {
	sent, tx := onLo(t, Sent), onLo(t, Listen)
	if got, lost := drain(t, sent); len(got) != 0 || lost {
		t.Fatalf("nothing sent: drained %v, lost %v", got, lost)
	}
	sendKeys(t, tx, 1, 2, 3)
	got, lost := drain(t, sent)
	if want := []drained{{1, true}, {2, true}, {3, true}}; !slices.Equal(got, want) || lost {
		t.Errorf("three sent: drained %v, lost %v; want %v, none lost", got, lost, want)
	}
	if got, _ := drain(t, sent); len(got) != 0 {
		t.Errorf("drained again: %v, want nothing", got)
	}

	// The smallest queue the kernel allows holds a few frames.
	rc, err := sent.f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 0) })
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]uint16, 64)
	for i := range keys {
		keys[i] = uint16(i + 1)
	}
	sendKeys(t, tx, keys...)
	got, lost = drain(t, sent)
	if !lost || len(got) == 0 || len(got) >= len(keys) || got[0].key != 1 {
		t.Errorf("%d sent into a small queue: drained %d (first %v), lost %v; want the first few, lost", len(keys), len(got), got, lost)
	}
	if _, lost := drain(t, sent); lost {
		t.Error("the Drain after: lost again, want the drops told once")
	}
}

// A Watch socket narrowed by SentOnly sees each frame this host sends,
// and no more the frames it receives: on loopback every frame sent comes
// back in, which a Listen socket sees; once it has, a Watch socket would
// have too.
func TestSentOnly(t *testing.T) {
	watch, tx, in := onLo(t, Watch), onLo(t, Listen), onLo(t, Listen)
	received := func(key uint16) {
		t.Helper()
		buf := make([]byte, 1600)
		for {
			fr, err := in.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if pdu, err := proto.ParseLACPDU(fr.Data); err == nil && !fr.Outgoing && pdu.Actor.System == testSystem(t) && pdu.Actor.Key == key {
				return
			}
		}
	}

	sendKeys(t, tx, 1)
	received(1)
	if got, _ := drain(t, watch); !slices.Equal(got, []drained{{1, true}, {1, false}}) {
		t.Errorf("Watch: drained %v, want key 1 out and in", got)
	}
	if err := watch.SentOnly(); err != nil {
		t.Fatal(err)
	}
	sendKeys(t, tx, 2)
	received(2)
	if got, _ := drain(t, watch); !slices.Equal(got, []drained{{2, true}}) {
		t.Errorf("narrowed: drained %v, want key 2 out only", got)
	}
}

// A read deadline ends a blocked Read with os.ErrDeadlineExceeded, not
// ErrClosed, and the Conn reads on once it is lifted.
func TestReadDeadline(t *testing.T) {
	sent, tx := onLo(t, Sent), onLo(t, Listen)
	buf := make([]byte, 1600)
	if err := sent.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := sent.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if err := sent.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	sendKeys(t, tx, 7)
	if fr, err := sent.Read(buf); err != nil || !fr.Outgoing {
		t.Fatalf("deadline lifted: %v, outgoing %v", err, fr.Outgoing)
	}
	sent.Close()
	if _, err := sent.Read(buf); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v, want ErrClosed", err)
	}
}
