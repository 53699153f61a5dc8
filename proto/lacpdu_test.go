package proto

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// ovsExpired is the first frame of testdata/ovs-3.1-fast-expired.pcap:
// Open vSwitch 3.1 (lacp=active, lacp-time=fast) on a member whose partner
// has not spoken yet.
func readVector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLACPDUCaptured(t *testing.T) {
	b := readVector(t, "ovs-3.1-fast-expired.bin")
	p, err := ParseLACPDU(b)
	if err != nil {
		t.Fatalf("ParseLACPDU: %v", err)
	}
	want := LACPDU{
		Dst: SlowProtocolsMAC,
		Src: MAC{0x86, 0x31, 0x40, 0xe6, 0xa4, 0x26},
		Actor: Info{
			SystemPriority: 65535,
			System:         MAC{0x8a, 0x8e, 0x45, 0x38, 0xdc, 0x46},
			Key:            1, PortPriority: 65535, Port: 1,
			State: StateActivity | StateTimeout | StateSync | StateCollecting | StateDistributing | StateExpired,
		},
		Partner: Info{State: StateTimeout},
	}
	if p != want {
		t.Fatalf("decoded\n got %+v\nwant %+v", p, want)
	}
	// Re-encoding the decoded frame gives the captured bytes back: the
	// codec is byte-compatible with what a real implementation sends.
	out, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("re-encoded frame differs\n got %x\nwant %x", out, b)
	}
}

func TestLACPDURoundTrip(t *testing.T) {
	in := LACPDU{
		Dst: SlowProtocolsMAC,
		Src: MAC{2, 0, 0, 0, 0, 1},
		Actor: Info{SystemPriority: 65535, System: MAC{2, 0, 0, 0, 0, 0x10}, Key: 7, PortPriority: 255, Port: 41,
			State: StateActivity | StateTimeout | StateAggregation | InService},
		Partner: Info{SystemPriority: 1, System: MAC{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}, Key: 3, PortPriority: 4, Port: 5,
			State: StateActivity | StateAggregation},
	}
	b, err := in.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want, got := FrameLen, len(b); want != got {
		t.Fatalf("frame length: want %d, got %d", want, got)
	}
	// Reference §6: bytes 40..45 of a frame are the partner's system MAC.
	if want, got := in.Partner.System[:], b[40:46]; !bytes.Equal(want, got) {
		t.Fatalf("partner system at 40..45: want %x, got %x", want, got)
	}
	var out LACPDU
	if err := out.UnmarshalBinary(append(b, make([]byte, 20)...)); err != nil {
		t.Fatalf("with padding: %v", err)
	}
	if in != out {
		t.Fatalf("round trip\n got %+v\nwant %+v", out, in)
	}
}

func TestParseLACPDUErrors(t *testing.T) {
	good := readVector(t, "ovs-3.1-fast-expired.bin")
	mod := func(off int, v byte) []byte {
		b := bytes.Clone(good)
		b[off] = v
		return b
	}
	tests := []struct {
		name   string
		in     []byte
		field  string
		offset int
	}{
		{"empty", nil, "ethernet header", 0},
		{"header only", good[:14], "subtype", 14},
		{"cut in actor", good[:30], "actor TLV", 16},
		{"cut in partner", good[:40], "partner TLV", 36},
		{"cut before padding end", good[:100], "padding", 74},
		{"one short", good[:123], "padding", 74},
		{"not slow protocols", mod(12, 0x08), "ethertype", 12},
		{"marker subtype", mod(14, 2), "subtype", 14},
		{"version 0", mod(15, 0), "version_number", 15},
		{"actor type", mod(16, 9), "actor_tlv_type", 16},
		{"actor len", mod(17, 0x13), "actor_info_len", 17},
		{"partner type", mod(36, 1), "partner_tlv_type", 36},
		{"partner len", mod(37, 0x15), "partner_info_len", 37},
		{"collector type", mod(56, 0), "collector_tlv_type", 56},
		{"collector len", mod(57, 0), "collector_info_len", 57},
		{"terminator type", mod(72, 1), "terminator_tlv_type", 72},
		{"terminator len", mod(73, 2), "terminator_info_len", 73},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLACPDU(tt.in)
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("want *FrameError, got %v", err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not match ErrMalformed: %v", err)
			}
			if fe.Field != tt.field || fe.Offset != tt.offset {
				t.Fatalf("want field %q at %d, got %q at %d (%v)", tt.field, tt.offset, fe.Field, fe.Offset, err)
			}
		})
	}
}

func TestParseLACPDUAcceptsLaterVersion(t *testing.T) {
	// 802.1AX-2014 peers send version 2; teamd ignores the version.
	b := readVector(t, "ovs-3.1-fast-expired.bin")
	b[15] = 2
	if _, err := ParseLACPDU(b); err != nil {
		t.Fatal(err)
	}
}

func TestStateString(t *testing.T) {
	tests := []struct {
		in   State
		want string
	}{
		{0, "none"},
		{StateActivity | StateTimeout | StateAggregation | InService, "activity|timeout|aggregation|sync|collecting|distributing"},
		{StateDefaulted | StateExpired, "defaulted|expired"},
		{0xff, "activity|timeout|aggregation|sync|collecting|distributing|defaulted|expired"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("State(%#02x).String() = %q, want %q", uint8(tt.in), got, tt.want)
		}
	}
}

func TestMAC(t *testing.T) {
	m, err := ParseMAC("AA:bb:cc:00:01:02")
	if err != nil {
		t.Fatal(err)
	}
	if want, got := "aa:bb:cc:00:01:02", m.String(); want != got {
		t.Fatalf("want %s, got %s", want, got)
	}
	if _, err := ParseMAC("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"); err == nil {
		t.Fatal("20-byte address accepted as a MAC")
	}
}

func FuzzParseLACPDU(f *testing.F) {
	f.Add(readVector(f, "ovs-3.1-fast-expired.bin"))
	f.Add([]byte{})
	f.Add(make([]byte, FrameLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseLACPDU(b)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FrameError: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes to the same significant bytes.
		out, _ := p.MarshalBinary()
		q, err := ParseLACPDU(out)
		if err != nil || q != p {
			t.Fatalf("re-decode: %v, %+v != %+v", err, q, p)
		}
	})
}
