package statefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/vmihailenco/msgpack/v5"
)

const (
	magic         = "TDWR"
	formatVersion = 1
	headerLen     = 24

	// MaxFileSize bounds a record file. A 64-member snapshot is about 25 KiB.
	MaxFileSize = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is matched (errors.Is) by every error about a record's content:
// envelope, checksum, length, msgpack body or field validation.
var ErrCorrupt = errors.New("corrupt record")

// CorruptError says what is wrong with a record's bytes.
type CorruptError struct {
	Offset int    // byte offset in the file where the problem is, -1 if none applies
	Reason string // what was found and what was expected
	Err    error  // underlying error, if any (e.g. a *proto.FieldError)
}

func (e *CorruptError) Error() string {
	s := e.Reason
	if e.Offset >= 0 {
		s = fmt.Sprintf("at offset %d: %s", e.Offset, s)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrCorrupt and the underlying error.
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

func corrupt(off int, format string, args ...any) error {
	return &CorruptError{Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Encode validates rec and returns the file bytes: envelope and body.
func Encode(rec proto.Record) ([]byte, error) {
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s record: %w", rec.Kind(), err)
	}
	var buf bytes.Buffer
	size := 512
	if s, ok := rec.(*proto.Snapshot); ok {
		size += 330 * len(s.Members) // a member with its last PDU encodes to 323 bytes
	}
	buf.Grow(size)
	buf.Write(make([]byte, headerLen))
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(rec); err != nil {
		return nil, fmt.Errorf("encode %s record: %w", rec.Kind(), err)
	}
	b := buf.Bytes()
	body := len(b) - headerLen
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("encode %s record: %d bytes, over the %d-byte limit", rec.Kind(), len(b), MaxFileSize)
	}
	copy(b[0:4], magic)
	b[4] = formatVersion
	b[5] = byte(rec.Kind())
	binary.BigEndian.PutUint64(b[8:], rec.RecordEpoch())
	binary.BigEndian.PutUint32(b[16:], uint32(body))
	binary.BigEndian.PutUint32(b[20:], checksum(b))
	return b, nil
}

func checksum(file []byte) uint32 {
	c := crc32.Update(0, crcTable, file[:20])
	return crc32.Update(c, crcTable, file[headerLen:])
}

// Decode checks and decodes a whole record file. The error matches
// errors.Is(err, ErrCorrupt) and, for a field that fails validation,
// errors.Is(err, proto.ErrInvalid).
func Decode(b []byte) (proto.Record, error) {
	if len(b) < headerLen {
		return nil, corrupt(len(b), "truncated envelope: %d bytes, want at least %d", len(b), headerLen)
	}
	if string(b[0:4]) != magic {
		return nil, corrupt(0, "bad magic %q, want %q (not a teamdwarm record)", b[0:4], magic)
	}
	if b[4] != formatVersion {
		return nil, corrupt(4, "format version %d, want %d", b[4], formatVersion)
	}
	kind := proto.Kind(b[5])
	if !kind.Valid() {
		return nil, corrupt(5, "unknown record kind %d", b[5])
	}
	if f := binary.BigEndian.Uint16(b[6:]); f != 0 {
		return nil, corrupt(6, "flags %#04x, want 0", f)
	}
	epoch := binary.BigEndian.Uint64(b[8:])
	n := binary.BigEndian.Uint32(b[16:])
	if have := len(b) - headerLen; uint64(n) > uint64(have) {
		return nil, corrupt(16, "truncated: envelope says %d body bytes, file holds %d", n, have)
	} else if uint64(n) < uint64(have) {
		return nil, corrupt(headerLen+int(n), "%d trailing bytes after the %d-byte body", have-int(n), n)
	}
	if got, want := checksum(b), binary.BigEndian.Uint32(b[20:]); got != want {
		return nil, corrupt(20, "checksum mismatch: computed %#08x, envelope says %#08x", got, want)
	}
	rec := proto.NewRecord(kind)
	if err := decodeBody(b[headerLen:], rec, true); err != nil {
		return nil, err
	}
	if rec.RecordEpoch() != epoch {
		return nil, corrupt(8, "envelope epoch %d differs from the body's %d", epoch, rec.RecordEpoch())
	}
	if err := rec.Validate(); err != nil {
		return nil, &CorruptError{Offset: -1, Reason: kind.String() + " record", Err: err}
	}
	return rec, nil
}

// decodeBody checks body strictly and decodes it into rec. With fast, the
// strict walk decodes the snapshot's members as it checks them and the
// decoder takes them from it (the members are parsed once); without, the
// walk checks field by field and the decoder parses everything. The two
// agree on every body (FuzzFastBodyMatchesSlow).
func decodeBody(body []byte, rec proto.Record, fast bool) error {
	br := proto.NewBodyReader(body)
	var pre *proto.BodyReader
	if fast {
		pre = br
	}
	if err := checkBody(body, rec, pre); err != nil {
		return err
	}
	var dec *msgpack.Decoder
	if fast {
		dec = msgpack.NewDecoder(br)
	} else {
		dec = msgpack.NewDecoder(bytes.NewReader(body)) // no fast path of proto's either
	}
	dec.DisallowUnknownFields(true)
	if err := dec.Decode(rec); err != nil {
		return &CorruptError{Offset: headerLen, Reason: rec.Kind().String() + " body", Err: err}
	}
	return nil
}
