package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Member is by far the bulk of a snapshot (up to 64 per LAG), so it has a
// hand-written msgpack codec; the reflection-driven one took 4x as long. The
// wire form is the same map the struct tags describe. The strict checks of a
// record (every field once, none unknown, none missing) are package
// statefile's, made on the raw body before any decoder runs; this decoder
// only maps each key to its field and refuses a key it does not know.

var memberFields = [...]string{
	"name", "ifindex", "mac", "actor", "partner", "state", "selected",
	"aggregator_id", "last_tx_mono", "last_tx", "last_rx",
}

// memberKeys are memberFields as encoded msgpack fixstr, written verbatim.
var memberKeys = func() (keys [len(memberFields)][]byte) {
	for i, name := range memberFields {
		keys[i] = append([]byte{0xa0 | byte(len(name))}, name...)
	}
	return keys
}()

// EncodeMsgpack implements msgpack.CustomEncoder. Into a bytes.Buffer (the
// record files' encoder) it appends the member's bytes in place, the same
// bytes the encoder's calls below write, several times faster.
func (m *Member) EncodeMsgpack(enc *msgpack.Encoder) error {
	if buf, ok := enc.Writer().(*bytes.Buffer); ok {
		buf.Write(m.appendMsgpack(buf.AvailableBuffer()))
		return nil
	}
	if err := enc.EncodeMapLen(len(memberFields)); err != nil {
		return err
	}
	w := enc.Writer()
	for i, key := range memberKeys {
		if _, err := w.Write(key); err != nil {
			return err
		}
		var err error
		switch i {
		case 0:
			err = enc.EncodeString(m.Name)
		case 1:
			err = enc.EncodeInt(int64(m.Ifindex))
		case 2:
			err = m.MAC.EncodeMsgpack(enc)
		case 3:
			err = m.Actor.EncodeMsgpack(enc)
		case 4:
			err = m.Partner.EncodeMsgpack(enc)
		case 5:
			err = enc.EncodeString(m.State)
		case 6:
			err = enc.EncodeBool(m.Selected)
		case 7:
			err = enc.EncodeInt(int64(m.AggregatorID))
		case 8:
			err = enc.EncodeInt(m.LastTxMono)
		case 9:
			err = enc.EncodeTime(m.LastTx)
		case 10:
			err = enc.EncodeBytes(m.LastRx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// appendMsgpack appends what EncodeMsgpack's general path writes.
func (m *Member) appendMsgpack(b []byte) []byte {
	b = append(b, 0x80|byte(len(memberFields)))
	for i, key := range memberKeys {
		b = append(b, key...)
		switch i {
		case 0:
			b = appendString(b, m.Name)
		case 1:
			b = appendInt(b, int64(m.Ifindex))
		case 2:
			b = append(b, 0xc4, byte(len(m.MAC)))
			b = append(b, m.MAC[:]...)
		case 3, 4:
			info := m.Actor
			if i == 4 {
				info = m.Partner
			}
			b = append(b, 0xc4, infoWireLen)
			b = append(b, make([]byte, infoWireLen)...)
			putInfo(b[len(b)-infoWireLen:], info)
		case 5:
			b = appendString(b, m.State)
		case 6:
			if m.Selected {
				b = append(b, 0xc3)
			} else {
				b = append(b, 0xc2)
			}
		case 7:
			b = appendInt(b, int64(m.AggregatorID))
		case 8:
			b = appendInt(b, m.LastTxMono)
		case 9:
			b = appendTime(b, m.LastTx)
		case 10:
			b = appendBytes(b, m.LastRx)
		}
	}
	return b
}

// appendString, appendInt, appendBytes and appendTime write what the
// msgpack package's EncodeString, EncodeInt, EncodeBytes and EncodeTime
// write (no interned strings; ints are always compact there).
func appendString(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= math.MaxInt8:
		return append(b, byte(n))
	case n >= 0 && n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n >= 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n >= 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

func appendBytes(b, v []byte) []byte {
	switch n := len(v); {
	case v == nil:
		return append(b, 0xc0)
	case n < 256:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, v...)
}

func appendTime(b []byte, t time.Time) []byte {
	secs := uint64(t.Unix())
	if secs>>34 == 0 {
		data := uint64(t.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), data)
	}
	b = binary.BigEndian.AppendUint32(append(b, 0xc7, 12, 0xff), uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, secs)
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Member) DecodeMsgpack(dec *msgpack.Decoder) error {
	if r, ok := dec.Buffered().(*BodyReader); ok {
		if n, ok := m.decodeFast(r.b[r.off:]); ok {
			r.off += n
			return nil
		}
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("member: nil, want a map")
	}
	var key [16]byte
	for range n {
		kn, err := dec.DecodeBytesLen()
		if err != nil {
			return fmt.Errorf("member: key: %w", err)
		}
		if kn < 0 || kn > len(key) {
			return fmt.Errorf("member: unknown field of %d bytes", kn)
		}
		if err := dec.ReadFull(key[:kn]); err != nil {
			return err
		}
		i := fieldIndex(memberFields[:], key[:kn])
		if i < 0 {
			return fmt.Errorf("member: unknown field %q", key[:kn])
		}
		var v int64
		switch i {
		case 0:
			m.Name, err = dec.DecodeString()
		case 1:
			v, err = dec.DecodeInt64()
			m.Ifindex = int(v)
		case 2:
			err = m.MAC.DecodeMsgpack(dec)
		case 3:
			err = m.Actor.DecodeMsgpack(dec)
		case 4:
			err = m.Partner.DecodeMsgpack(dec)
		case 5:
			m.State, err = dec.DecodeString()
		case 6:
			m.Selected, err = dec.DecodeBool()
		case 7:
			v, err = dec.DecodeInt64()
			m.AggregatorID = int(v)
		case 8:
			m.LastTxMono, err = dec.DecodeInt64()
		case 9:
			var t time.Time
			t, err = dec.DecodeTime()
			m.LastTx = t
		case 10:
			m.LastRx, err = dec.DecodeBytes()
		}
		if err != nil {
			return fmt.Errorf("member field %s: %w", memberFields[i], err)
		}
	}
	return nil
}

func fieldIndex(names []string, key []byte) int {
	for i, name := range names {
		if name == string(key) {
			return i
		}
	}
	return -1
}

// Members are a snapshot's members. Their codec handles the whole array,
// so that the msgpack package's per-element reflection is not paid 64
// times; the bytes are those of a []Member.
type Members []Member

// duplicate finds a name given twice, the later index. A small hash table
// on the stack (a LAG has at most 64 members) costs less than a map, a
// sort or comparing every pair.
func (ms Members) duplicate() (int, bool) {
	const slots = 256
	if len(ms) > slots/2 {
		seen := make(map[string]bool, len(ms))
		for i, m := range ms {
			if seen[m.Name] {
				return i, true
			}
			seen[m.Name] = true
		}
		return 0, false
	}
	var table [slots]uint8 // member index + 1, 0 for free
	for i, m := range ms {
		h := uint32(2166136261) // FNV-1a
		for j := 0; j < len(m.Name); j++ {
			h = (h ^ uint32(m.Name[j])) * 16777619
		}
		for k := h % slots; ; k = (k + 1) % slots {
			if table[k] == 0 {
				table[k] = uint8(i + 1)
				break
			}
			if ms[table[k]-1].Name == m.Name {
				return i, true
			}
		}
	}
	return 0, false
}

// EncodeMsgpack implements msgpack.CustomEncoder (the package encodes a
// nil Members as nil itself).
func (ms Members) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(len(ms)); err != nil {
		return err
	}
	if buf, ok := enc.Writer().(*bytes.Buffer); ok {
		b := buf.AvailableBuffer()
		for i := range ms {
			b = ms[i].appendMsgpack(b)
		}
		buf.Write(b)
		return nil
	}
	for i := range ms {
		if err := ms[i].EncodeMsgpack(enc); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack implements msgpack.CustomDecoder (the package decodes a
// msgpack nil as a nil Members itself).
func (ms *Members) DecodeMsgpack(dec *msgpack.Decoder) error {
	if r, ok := dec.Buffered().(*BodyReader); ok {
		for i, p := range r.pre {
			if p.start == r.off {
				*ms, r.off = p.ms, p.end
				r.pre = append(r.pre[:i], r.pre[i+1:]...)
				return nil
			}
		}
	}
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 0 {
		*ms = nil
		return nil
	}
	// n is bounded by the body: package statefile's walk checked that
	// every element is a member's map before any decoder ran.
	out := make(Members, n)
	for i := range out {
		if err := out[i].DecodeMsgpack(dec); err != nil {
			return fmt.Errorf("members[%d]: %w", i, err)
		}
	}
	*ms = out
	return nil
}

// DecodeMembers decodes n members in a row from the start of b if each is
// exactly as the encoder writes members (see decodeFast), and says how
// many bytes they took; ok is false for anything else, and b is then for
// the general decoder and the strict checks to judge. Package statefile's
// strict walk decodes the members this way as it checks them, and hands
// them to the decoder through the BodyReader (Predecoded), so that they
// are parsed once. The members' names share one string and their last
// PDUs one buffer (each capped to its own bytes), instead of two
// allocations a member: for a 64-member snapshot those were a fifth of
// the decode.
func DecodeMembers(b []byte, n uint64) (ms Members, used int, ok bool) {
	if n > uint64(len(b)) { // a member takes a byte at least
		return nil, 0, false
	}
	// Sized for what a LAG has, grown by what decodes, not by what the
	// header claims.
	c := int(min(n, 64))
	ms = make(Members, 0, c)
	a := &memberArena{rx: make([]byte, 0, c*128), names: make([]byte, 0, c*16), nameAt: make([][2]int, 0, c)}
	for range n {
		var m Member
		k, ok := m.decode(b[used:], a)
		if !ok {
			return nil, 0, false
		}
		used += k
		ms = append(ms, m)
	}
	names := string(a.names)
	for i, at := range a.nameAt {
		ms[i].Name = names[at[0]:at[1]]
	}
	return ms, used, true
}

// memberArena is where DecodeMembers puts what its members' fields share.
type memberArena struct {
	rx     []byte   // every last_rx, back to back
	names  []byte   // every name, back to back
	nameAt [][2]int // each member's name in names
}

// Predecoded hands the decoder the members of the array whose msgpack
// header starts at body offset start and which ends at end: the Members
// decoder that meets that array takes them instead of parsing it again.
func (r *BodyReader) Predecoded(start, end int, ms Members) {
	r.pre = append(r.pre, predecoded{start, end, ms})
}

type predecoded struct {
	start, end int
	ms         Members
}

// BodyReader is a record body being decoded (msgpack.NewDecoder reads it
// byte by byte, through no buffer of its own, since it is an
// io.ByteScanner). Member's decoder finds it behind the msgpack.Decoder
// and decodes a member from the unread bytes in place, ten times faster
// than through the decoder's calls; anything it does not expect is left to
// those calls.
type BodyReader struct {
	b   []byte
	off int
	pre []predecoded
}

// NewBodyReader reads b.
func NewBodyReader(b []byte) *BodyReader { return &BodyReader{b: b} }

// Read implements io.Reader.
func (r *BodyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// ReadByte implements io.ByteReader.
func (r *BodyReader) ReadByte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// UnreadByte implements io.ByteScanner.
func (r *BodyReader) UnreadByte() error {
	if r.off == 0 {
		return errors.New("proto: UnreadByte at the start")
	}
	r.off--
	return nil
}

// memberStates are the port states teamd reports, so that decoding one
// does not allocate.
var memberStates = [...]string{"current", "expired", "defaulted", "disabled"}

func internState(s []byte) string {
	for _, known := range memberStates {
		if known == string(s) {
			return known
		}
	}
	return string(s)
}

// decodeFast decodes a member from b as the encoder writes it (a map of
// its eleven fields, each once, fixstr keys in any order; compact ints,
// bin, fixstr, bool, timestamp values) and returns how many bytes it
// took; ok is false for anything else, which is then left to
// DecodeMsgpack's general path.
func (m *Member) decodeFast(b []byte) (n int, ok bool) { return m.decode(b, nil) }

// decode is decodeFast, with the name and last_rx in a if it is not nil
// (the name is then left for DecodeMembers to set).
func (m *Member) decode(b []byte, a *memberArena) (n int, ok bool) {
	if len(b) == 0 || b[0]&0xf0 != 0x80 {
		return 0, false
	}
	entries, off := int(b[0]&0x0f), 1
	if entries != len(memberFields) {
		return 0, false // a field missing (or unknown): the general path, and the strict walk, say which
	}
	var out Member
	var seen uint16
	for i := range entries {
		idx := i // in order, as the encoder writes them: the key's bytes compared whole
		if i < len(memberKeys) && bytes.HasPrefix(b[off:], memberKeys[i]) {
			off += len(memberKeys[i])
		} else {
			k, o, ok := fixstr(b, off)
			if !ok {
				return 0, false
			}
			if idx = fieldIndex(memberFields[:], k); idx < 0 {
				return 0, false
			}
			off = o
		}
		if seen&(1<<idx) != 0 {
			return 0, false // given twice
		}
		seen |= 1 << idx
		var v int64
		switch idx {
		case 0: // name
			s, o, ok := fixstr(b, off)
			if !ok {
				return 0, false
			}
			if a != nil {
				a.nameAt = append(a.nameAt, [2]int{len(a.names), len(a.names) + len(s)})
				a.names = append(a.names, s...)
			} else {
				out.Name = string(s)
			}
			off = o
		case 1: // ifindex
			if v, off, ok = compactInt(b, off); !ok {
				return 0, false
			}
			out.Ifindex = int(v)
		case 2: // mac
			p, o, ok := bin8(b, off, len(out.MAC))
			if !ok {
				return 0, false
			}
			copy(out.MAC[:], p)
			off = o
		case 3, 4: // actor, partner
			p, o, ok := bin8(b, off, infoWireLen)
			if !ok {
				return 0, false
			}
			if idx == 3 {
				out.Actor = getInfo(p)
			} else {
				out.Partner = getInfo(p)
			}
			off = o
		case 5: // state
			s, o, ok := fixstr(b, off)
			if !ok {
				return 0, false
			}
			out.State, off = internState(s), o
		case 6: // selected
			if off >= len(b) || (b[off] != 0xc2 && b[off] != 0xc3) {
				return 0, false
			}
			out.Selected, off = b[off] == 0xc3, off+1
		case 7: // aggregator_id
			if v, off, ok = compactInt(b, off); !ok {
				return 0, false
			}
			out.AggregatorID = int(v)
		case 8: // last_tx_mono
			if out.LastTxMono, off, ok = compactInt(b, off); !ok {
				return 0, false
			}
		case 9: // last_tx
			if out.LastTx, off, ok = timestamp(b, off); !ok {
				return 0, false
			}
		case 10: // last_rx
			if off < len(b) && b[off] == 0xc0 { // nil
				off++
				break
			}
			p, o, ok := bin8(b, off, -1)
			if !ok {
				return 0, false
			}
			if a != nil {
				start := len(a.rx)
				a.rx = append(a.rx, p...)
				out.LastRx = a.rx[start:len(a.rx):len(a.rx)]
			} else {
				out.LastRx = append(make([]byte, 0, len(p)), p...)
			}
			off = o
		}
	}
	*m = out
	return off, true
}

// fixstr reads a fixstr at b[off:].
func fixstr(b []byte, off int) ([]byte, int, bool) {
	if off >= len(b) || b[off]&0xe0 != 0xa0 {
		return nil, 0, false
	}
	n := int(b[off] & 0x1f)
	if off+1+n > len(b) {
		return nil, 0, false
	}
	return b[off+1 : off+1+n], off + 1 + n, true
}

// bin8 reads a bin8 of want bytes (any length if want < 0) at b[off:].
func bin8(b []byte, off, want int) ([]byte, int, bool) {
	if off+2 > len(b) || b[off] != 0xc4 {
		return nil, 0, false
	}
	n := int(b[off+1])
	if (want >= 0 && n != want) || off+2+n > len(b) {
		return nil, 0, false
	}
	return b[off+2 : off+2+n], off + 2 + n, true
}

// compactInt reads an integer in any of msgpack's integer forms.
func compactInt(b []byte, off int) (int64, int, bool) {
	if off >= len(b) {
		return 0, 0, false
	}
	c := b[off]
	switch {
	case c <= 0x7f:
		return int64(c), off + 1, true
	case c >= 0xe0:
		return int64(int8(c)), off + 1, true
	}
	var size int
	switch c {
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2:
		size = 4
	case 0xcf, 0xd3:
		size = 8
	}
	if size == 0 || off+1+size > len(b) {
		return 0, 0, false
	}
	p := b[off+1 : off+1+size]
	var u uint64
	for _, x := range p {
		u = u<<8 | uint64(x)
	}
	if c >= 0xd0 { // signed: sign-extend
		shift := 64 - 8*size
		return int64(u<<shift) >> shift, off + 1 + size, true
	}
	if u > math.MaxInt64 {
		return 0, 0, false
	}
	return int64(u), off + 1 + size, true
}

// timestamp reads msgpack's timestamp extension (type -1) as the
// msgpack package decodes it: time.Unix, the zero time in UTC.
func timestamp(b []byte, off int) (time.Time, int, bool) {
	var data []byte
	switch {
	case off+2 <= len(b) && b[off] == 0xd6 && b[off+1] == 0xff:
		data = b[off+2 : min(off+6, len(b))]
	case off+2 <= len(b) && b[off] == 0xd7 && b[off+1] == 0xff:
		data = b[off+2 : min(off+10, len(b))]
	case off+3 <= len(b) && b[off] == 0xc7 && b[off+1] == 12 && b[off+2] == 0xff:
		data, off = b[off+3:min(off+15, len(b))], off+1
	default:
		return time.Time{}, 0, false
	}
	var t time.Time
	switch len(data) {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(data)), 0)
	case 8:
		v := binary.BigEndian.Uint64(data)
		t = time.Unix(int64(v&0x00000003ffffffff), int64(v>>34))
	case 12:
		t = time.Unix(int64(binary.BigEndian.Uint64(data[4:])), int64(binary.BigEndian.Uint32(data)))
	default:
		return time.Time{}, 0, false // truncated
	}
	if t.IsZero() {
		t = t.UTC()
	}
	return t, off + 2 + len(data), true
}
