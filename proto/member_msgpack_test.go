package proto

import (
	"bytes"
	"io"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// members covers what the fast paths special-case: every width of int,
// strings of every length class, nil, empty and full last PDUs, every
// timestamp form, the zero time.
func members() Members {
	pdu := make([]byte, FrameLen)
	ms := Members{
		{Name: "Ethernet0", Ifindex: 5, State: "current", Selected: true, AggregatorID: 5, LastTxMono: 123456789, LastTx: time.Unix(1764633600, 123456789), LastRx: pdu,
			MAC: MAC{2, 0, 0, 0, 0, 1}, Actor: Info{SystemPriority: 65535, System: MAC{2, 0, 0, 0, 0, 9}, Key: 1, PortPriority: 255, Port: 1, State: 0x3f}},
		{Name: "e", Ifindex: -1, State: "expired", LastTxMono: -200, LastTx: time.Unix(1, 0)},
		{Name: string(bytes.Repeat([]byte("x"), 40)), Ifindex: math.MaxInt32, State: "something else", LastTxMono: math.MinInt64, LastTx: time.Unix(1<<35, 5), LastRx: []byte{}},
		{Name: "f", Ifindex: 300, AggregatorID: 70000, State: "defaulted", LastTxMono: math.MaxInt64, LastTx: time.Time{}},
		{Name: "g", Ifindex: -129, AggregatorID: -40000, State: "disabled", LastTxMono: 1 << 40, LastTx: time.Unix(-5, 0)},
	}
	return ms
}

// opaque hides a bytes.Buffer from the encoder, which then takes its
// general path.
type opaque struct{ io.Writer }

// The fast paths write and read exactly what the general ones do.
func TestMembersFastPathsMatchTheGeneralOnes(t *testing.T) {
	ms := members()
	var fast bytes.Buffer
	enc := msgpack.NewEncoder(&fast)
	enc.UseCompactInts(true)
	if err := enc.Encode(ms); err != nil {
		t.Fatal(err)
	}
	var general bytes.Buffer
	enc = msgpack.NewEncoder(opaque{&general})
	enc.UseCompactInts(true)
	if err := enc.Encode(ms); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast.Bytes(), general.Bytes()) {
		t.Fatalf("the fast encoder wrote\n%x\nthe general one\n%x", fast.Bytes(), general.Bytes())
	}
	var viaFast, viaGeneral Members
	if err := msgpack.NewDecoder(NewBodyReader(fast.Bytes())).Decode(&viaFast); err != nil {
		t.Fatal(err)
	}
	if err := msgpack.NewDecoder(bytes.NewReader(fast.Bytes())).Decode(&viaGeneral); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaFast, viaGeneral) {
		t.Fatalf("the fast decoder read\n%+v\nthe general one\n%+v", viaFast, viaGeneral)
	}
	for i := range ms {
		if !viaFast[i].LastTx.Equal(ms[i].LastTx) || viaFast[i].Name != ms[i].Name || viaFast[i].LastTxMono != ms[i].LastTxMono {
			t.Errorf("member %d: %+v, encoded %+v", i, viaFast[i], ms[i])
		}
	}
}

// Differential fuzzing: whatever the bytes, the fast decoder either
// declines them or reads what the general decoder reads.
func FuzzMemberDecodeFast(f *testing.F) {
	for _, m := range members() {
		f.Add(m.appendMsgpack(nil))
	}
	f.Add([]byte{0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Member
		n, ok := fast.decodeFast(b)
		if !ok {
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("took %d of %d bytes", n, len(b))
		}
		var general Member
		dec := msgpack.NewDecoder(bytes.NewReader(b[:n]))
		if err := general.DecodeMsgpack(dec); err != nil {
			t.Fatalf("the fast decoder took %x, the general one refused it: %v", b[:n], err)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("%x: fast %+v, general %+v", b[:n], fast, general)
		}
	})
}

// DecodeMembers reads a row of members as decodeFast reads each, and
// the buffers they share cannot leak into each other.
func TestDecodeMembersSharesBuffersSafely(t *testing.T) {
	var ms []Member
	var b []byte
	for _, m := range members() {
		var one Member
		if _, ok := one.decodeFast(m.appendMsgpack(nil)); ok { // a 40-byte name is a str8: the general path's
			ms = append(ms, m)
			b = m.appendMsgpack(b)
		}
	}
	if len(ms) < 2 {
		t.Fatalf("%d members for the fast path", len(ms))
	}
	got, used, ok := DecodeMembers(b, uint64(len(ms)))
	if !ok || used != len(b) {
		t.Fatalf("ok %v, used %d of %d", ok, used, len(b))
	}
	off := 0
	for i := range ms {
		var one Member
		n, ok := one.decodeFast(b[off:])
		if !ok || !reflect.DeepEqual(one, got[i]) {
			t.Fatalf("member %d: one by one %+v, in a row %+v", i, one, got[i])
		}
		off += n
	}
	for i := range got {
		if got[i].LastRx != nil && cap(got[i].LastRx) != len(got[i].LastRx) {
			t.Errorf("member %d: last_rx has room for %d more bytes: an append would overwrite the next member's", i, cap(got[i].LastRx)-len(got[i].LastRx))
		}
	}
	if _, _, ok := DecodeMembers(b, uint64(len(ms)+1)); ok {
		t.Error("one member more than the bytes hold: decoded")
	}
	if _, _, ok := DecodeMembers(b[:4], 1<<40); ok {
		t.Error("a count larger than the input: decoded")
	}
}

func TestMembersDuplicate(t *testing.T) {
	for _, tc := range []struct {
		names []string
		at    int
		dup   bool
	}{
		{names: nil},
		{names: []string{"Ethernet0", "Ethernet4", "Ethernet8"}},
		{names: []string{"Ethernet0", "Ethernet4", "Ethernet0"}, at: 2, dup: true},
		{names: []string{"a", "b", "c", "b", "a"}, at: 3, dup: true},
	} {
		var ms Members
		for _, n := range tc.names {
			ms = append(ms, Member{Name: n})
		}
		if at, dup := ms.duplicate(); at != tc.at || dup != tc.dup {
			t.Errorf("%v: duplicate %d, %v; want %d, %v", tc.names, at, dup, tc.at, tc.dup)
		}
	}
	// More than the stack table holds: the map's way, same answer.
	var many Members
	for i := range 300 {
		many = append(many, Member{Name: string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	if _, dup := many.duplicate(); dup {
		t.Error("300 distinct names: a duplicate")
	}
	many = append(many, Member{Name: many[7].Name})
	if at, dup := many.duplicate(); !dup || at != 300 {
		t.Errorf("a name given again: %d, %v", at, dup)
	}
}
