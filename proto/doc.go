// Package proto is teamdwarm's shared vocabulary: the IEEE 802.1AX (v1)
// LACPDU as teamd puts it on the wire, the actor/partner information it
// carries, and the handoff records that the shim and the supervisor exchange.
//
// Nothing here touches files, processes or Docker; package statefile stores
// these records and the other packages act on them.
//
// # LACPDU
//
// [LACPDU] mirrors libteam's struct lacpdu: a 14-byte Ethernet header and a
// 110-byte body, 124 bytes in all. [ParseLACPDU] validates like teamd's
// lacpdu_check (and a little more, see its doc), never reads past its input
// and reports the offending field and offset in a [*FrameError].
//
// # Records
//
// [Snapshot], [Standby], [Active] and [Cutover] are the records of the
// handoff described in DESIGN.md. Each has a [Kind] and carries
// [SchemaVersion]; [Validate] checks one before it is trusted.
package proto
