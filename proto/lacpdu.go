package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants of the Slow Protocols / LACP frame.
const (
	// FrameLen is the length of teamd's LACPDU frame, Ethernet header
	// included: sizeof(struct lacpdu).
	FrameLen = 124
	// EtherTypeSlow is the Slow Protocols ethertype.
	EtherTypeSlow = 0x8809
	// SubtypeLACP is the Slow Protocols subtype of LACP.
	SubtypeLACP = 1
	// Version is the LACP version teamd sends.
	Version = 1
)

// SlowProtocolsMAC is the destination of every LACPDU: the Slow Protocols
// multicast group 01:80:c2:00:00:02.
var SlowProtocolsMAC = MAC{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}

// TLV types and lengths as lacpdu_check insists on them.
const (
	tlvTerminator = 0
	tlvActor      = 1
	tlvPartner    = 2
	tlvCollector  = 3

	infoLen       = 0x14
	collectorLen  = 0x10
	terminatorLen = 0
)

// Offsets into the frame (struct lacpdu, packed).
const (
	offDst           = 0
	offSrc           = 6
	offEtherType     = 12
	offSubtype       = 14
	offVersion       = 15
	offActorTLV      = 16
	offActor         = 18
	offPartnerTLV    = 36
	offPartner       = 38
	offCollectorTLV  = 56
	offCollectorDly  = 58
	offTerminatorTLV = 72
)

// LACPDU is one LACP frame as teamd sends and receives it.
type LACPDU struct {
	Dst     MAC // normally SlowProtocolsMAC
	Src     MAC // the sending member's own MAC
	Actor   Info
	Partner Info
	// CollectorMaxDelay is the collector TLV's max delay (teamd sends 0).
	CollectorMaxDelay uint16
}

// ErrMalformed is matched by every error ParseLACPDU returns:
// errors.Is(err, ErrMalformed).
var ErrMalformed = errors.New("malformed LACPDU")

// FrameError says which field of a frame is wrong and where it is.
type FrameError struct {
	Field  string // e.g. "actor_info_len"
	Offset int    // byte offset of the field in the frame
	Reason string // what was found and what was expected
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("malformed LACPDU: %s at offset %d: %s", e.Field, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *FrameError) Unwrap() error { return ErrMalformed }

// MarshalBinary encodes p as teamd's 124-byte frame.
func (p *LACPDU) MarshalBinary() ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, FrameLen))
}

// AppendBinary appends the 124-byte frame to b.
func (p *LACPDU) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, FrameLen)...)
	f := b[start:]
	copy(f[offDst:], p.Dst[:])
	copy(f[offSrc:], p.Src[:])
	binary.BigEndian.PutUint16(f[offEtherType:], EtherTypeSlow)
	f[offSubtype] = SubtypeLACP
	f[offVersion] = Version
	f[offActorTLV], f[offActorTLV+1] = tlvActor, infoLen
	putInfo(f[offActor:], p.Actor)
	f[offPartnerTLV], f[offPartnerTLV+1] = tlvPartner, infoLen
	putInfo(f[offPartner:], p.Partner)
	f[offCollectorTLV], f[offCollectorTLV+1] = tlvCollector, collectorLen
	binary.BigEndian.PutUint16(f[offCollectorDly:], p.CollectorMaxDelay)
	f[offTerminatorTLV], f[offTerminatorTLV+1] = tlvTerminator, terminatorLen
	return b, nil
}

func putInfo(b []byte, i Info) {
	binary.BigEndian.PutUint16(b[0:], i.SystemPriority)
	copy(b[2:8], i.System[:])
	binary.BigEndian.PutUint16(b[8:], i.Key)
	binary.BigEndian.PutUint16(b[10:], i.PortPriority)
	binary.BigEndian.PutUint16(b[12:], i.Port)
	b[14] = byte(i.State)
	// b[15:18] reserved, zero.
}

func getInfo(b []byte) Info {
	var i Info
	i.SystemPriority = binary.BigEndian.Uint16(b[0:])
	copy(i.System[:], b[2:8])
	i.Key = binary.BigEndian.Uint16(b[8:])
	i.PortPriority = binary.BigEndian.Uint16(b[10:])
	i.Port = binary.BigEndian.Uint16(b[12:])
	i.State = State(b[14])
	return i
}

// UnmarshalBinary decodes b with ParseLACPDU's rules.
func (p *LACPDU) UnmarshalBinary(b []byte) error {
	v, err := ParseLACPDU(b)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParseLACPDU decodes a frame that starts with the Ethernet header.
//
// It checks what teamd's lacpdu_check checks (subtype 1 and the TLV lengths
// 0x14/0x14/0x10/0) and, because this project also decodes files an operator
// hands it, the ethertype, a non-zero version and the TLV types. Bytes past
// the 124th (padding some senders add) are ignored; reserved fields are not
// checked, as 802.1AX 43.4.12 says. The error, a *FrameError, names the
// first field that is wrong.
func ParseLACPDU(b []byte) (LACPDU, error) {
	var p LACPDU
	if err := CheckLACPDU(b); err != nil {
		return p, err
	}
	copy(p.Dst[:], b[offDst:])
	copy(p.Src[:], b[offSrc:])
	p.Actor = getInfo(b[offActor:])
	p.Partner = getInfo(b[offPartner:])
	p.CollectorMaxDelay = binary.BigEndian.Uint16(b[offCollectorDly:])
	return p, nil
}

// CheckLACPDU checks b as ParseLACPDU does, without decoding it: for a
// reader that only needs to know that a frame it keeps is one.
func CheckLACPDU(b []byte) error {
	if len(b) < FrameLen {
		// Name the first field the input does not fully hold.
		return truncated(len(b))
	}
	if et := binary.BigEndian.Uint16(b[offEtherType:]); et != EtherTypeSlow {
		return &FrameError{"ethertype", offEtherType, fmt.Sprintf("got %#04x, want %#04x", et, EtherTypeSlow)}
	}
	if b[offVersion] == 0 {
		return &FrameError{"version_number", offVersion, "got 0, want 1 or later"}
	}
	for _, c := range &frameChecks {
		if got := b[c.off]; got != c.want {
			return &FrameError{c.field, c.off, fmt.Sprintf("got %#02x, want %#02x", got, c.want)}
		}
	}
	return nil
}

// frameChecks are the bytes of a LACPDU that have one right value.
var frameChecks = [...]struct {
	field string
	off   int
	want  byte
}{
	{"subtype", offSubtype, SubtypeLACP},
	{"actor_tlv_type", offActorTLV, tlvActor},
	{"actor_info_len", offActorTLV + 1, infoLen},
	{"partner_tlv_type", offPartnerTLV, tlvPartner},
	{"partner_info_len", offPartnerTLV + 1, infoLen},
	{"collector_tlv_type", offCollectorTLV, tlvCollector},
	{"collector_info_len", offCollectorTLV + 1, collectorLen},
	{"terminator_tlv_type", offTerminatorTLV, tlvTerminator},
	{"terminator_info_len", offTerminatorTLV + 1, terminatorLen},
}

// fields in frame order, for naming where a short input ends.
var frameFields = [...]struct {
	name string
	off  int
}{
	{"ethernet header", offDst},
	{"subtype", offSubtype},
	{"version_number", offVersion},
	{"actor TLV", offActorTLV},
	{"partner TLV", offPartnerTLV},
	{"collector TLV", offCollectorTLV},
	{"terminator TLV", offTerminatorTLV},
	{"padding", offTerminatorTLV + 2},
}

func truncated(n int) error {
	field := frameFields[0]
	for _, f := range frameFields {
		if f.off <= n {
			field = f
		}
	}
	if n < 0 {
		n = 0
	}
	return &FrameError{field.name, field.off, fmt.Sprintf("frame truncated: %d bytes, want at least %d", n, FrameLen)}
}
