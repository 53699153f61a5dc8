package proto

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Info is the actor or partner information TLV of a LACPDU (802.1AX
// 6.4.2.3), the same fields teamd keeps in struct lacpdu_info and prints as
// actor_lacpdu_info / partner_lacpdu_info.
type Info struct {
	SystemPriority uint16 `msgpack:"system_priority" json:"system_priority"`
	System         MAC    `msgpack:"system" json:"system"`
	Key            uint16 `msgpack:"key" json:"key"`
	PortPriority   uint16 `msgpack:"port_priority" json:"port_priority"`
	Port           uint16 `msgpack:"port" json:"port"`
	State          State  `msgpack:"state" json:"state"`
}

// SameIdentity reports whether i and o name the same port of the same
// system: everything but the state. A peer that sees this change on a
// member treats it as a different partner and re-negotiates.
func (i Info) SameIdentity(o Info) bool {
	i.State, o.State = 0, 0
	return i == o
}

// String formats i like teamdctl's state view, on one line.
func (i Info) String() string {
	return fmt.Sprintf("system %s prio %d key %d port %d prio %d state %s",
		i.System, i.SystemPriority, i.Key, i.Port, i.PortPriority, i.State)
}

// infoWireLen is the length of an information TLV's payload on the wire
// (everything after type and length: 18 bytes, reserved bytes included).
const infoWireLen = infoLen - 2

// EncodeMsgpack stores i in records as its 18-byte 802.1AX wire form (msgpack
// bin): compact, fixed-size and the same bytes a LACPDU carries.
func (i Info) EncodeMsgpack(enc *msgpack.Encoder) error {
	var b [infoWireLen]byte
	putInfo(b[:], i)
	return enc.EncodeBytes(b[:])
}

// DecodeMsgpack reads what EncodeMsgpack wrote; a length other than 18 is an
// error.
func (i *Info) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return err
	}
	if n != infoWireLen {
		return fmt.Errorf("LACP info: %d bytes, want %d", n, infoWireLen)
	}
	var b [infoWireLen]byte
	if err := dec.ReadFull(b[:]); err != nil {
		return err
	}
	*i = getInfo(b[:])
	return nil
}
