package statefile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/vmihailenco/msgpack/v5"
)

// checkBody walks the raw msgpack body before the msgpack package sees it.
// It proves that every declared length fits in the bytes that remain (so a
// forged length cannot drive an allocation), that the nesting is bounded,
// and that each map meant for a struct has exactly that struct's fields:
// none unknown, none twice, none missing but those tagged omitempty (the
// fields added to a record since its first version, which an older writer
// does not know). It is the one strict check of a record: the structs with
// a codec of their own (proto.Member as a map, proto.Info and proto.MAC as
// fixed binary) are checked here too, and their decoders only decode. Type
// mismatches of scalars are left to the msgpack decoder.
func checkBody(body []byte, rec proto.Record, pre *proto.BodyReader) error {
	w := walker{b: body, pre: pre, path: make([]string, 0, maxDepth+2)}
	w.push(rec.Kind().String())
	if err := w.value(shapes[rec.Kind()], 0); err != nil {
		return err
	}
	if w.off != len(body) {
		return corrupt(headerLen+w.off, "%d bytes after the msgpack body", len(body)-w.off)
	}
	return nil
}

const maxDepth = 16

var (
	timeType      = reflect.TypeFor[time.Time]()
	membersType   = reflect.TypeFor[proto.Members]()
	customDecoder = reflect.TypeFor[msgpack.CustomDecoder]()
)

type walker struct {
	b   []byte
	off int
	// pre, if set, gets the members the walk decoded (membersFast).
	pre *proto.BodyReader
	// path is where the walk is, e.g. [snapshot members [] actor]; it is
	// turned into a string only for an error message.
	path []string
}

func (w *walker) push(name string) { w.path = append(w.path, name) }
func (w *walker) pop()             { w.path = w.path[:len(w.path)-1] }

func (w *walker) where() string {
	var b strings.Builder
	for i, name := range w.path {
		if i > 0 && name != "[]" && name != "{}" {
			b.WriteByte('.')
		}
		b.WriteString(name)
	}
	return b.String()
}

// fail reports a problem at the current offset and path.
func (w *walker) fail(format string, args ...any) error {
	return corrupt(headerLen+w.off, "%s: %s", w.where(), fmt.Sprintf(format, args...))
}

func (w *walker) need(n uint64, what string) error {
	if n > uint64(len(w.b)-w.off) {
		return w.fail("%s declares %d bytes, only %d remain", what, n, len(w.b)-w.off)
	}
	return nil
}

func (w *walker) uint(size int) (uint64, error) {
	if err := w.need(uint64(size), "length"); err != nil {
		return 0, err
	}
	var v uint64
	switch size {
	case 1:
		v = uint64(w.b[w.off])
	case 2:
		v = uint64(binary.BigEndian.Uint16(w.b[w.off:]))
	case 4:
		v = uint64(binary.BigEndian.Uint32(w.b[w.off:]))
	}
	w.off += size
	return v, nil
}

// header reads one msgpack type byte and its length. For str, bin and ext
// the payload is skipped here; for arrays and maps n is the element count.
type mpKind int

const (
	mpScalar mpKind = iota
	mpNil
	mpStr
	mpBin
	mpExt
	mpArray
	mpMap
)

func (w *walker) header() (mpKind, uint64, error) {
	if w.off >= len(w.b) {
		return 0, 0, w.fail("body ends where a value should start")
	}
	c := w.b[w.off]
	w.off++
	var (
		k       mpKind
		lenSize int    // bytes of a length field that follows
		payload uint64 // payload bytes to skip (after the length field, if any)
	)
	switch {
	case c <= 0x7f || c >= 0xe0:
		return mpScalar, 0, nil
	case c <= 0x8f:
		return mpMap, uint64(c & 0x0f), nil
	case c <= 0x9f:
		return mpArray, uint64(c & 0x0f), nil
	case c <= 0xbf:
		k, payload = mpStr, uint64(c&0x1f)
	case c == 0xc0:
		return mpNil, 0, nil
	case c == 0xc2 || c == 0xc3:
		return mpScalar, 0, nil
	case c >= 0xc4 && c <= 0xc6:
		k, lenSize = mpBin, 1<<(c-0xc4)
	case c >= 0xc7 && c <= 0xc9:
		k, lenSize, payload = mpExt, 1<<(c-0xc7), 1 // + the type byte
	case c == 0xca || c == 0xcb:
		k, payload = mpScalar, 4<<(c-0xca)
	case c >= 0xcc && c <= 0xcf:
		k, payload = mpScalar, 1<<(c-0xcc)
	case c >= 0xd0 && c <= 0xd3:
		k, payload = mpScalar, 1<<(c-0xd0)
	case c >= 0xd4 && c <= 0xd8:
		k, payload = mpExt, 1+1<<(c-0xd4)
	case c >= 0xd9 && c <= 0xdb:
		k, lenSize = mpStr, 1<<(c-0xd9)
	case c == 0xdc || c == 0xdd:
		n, err := w.uint(2 << (c - 0xdc))
		return mpArray, n, err
	case c == 0xde || c == 0xdf:
		n, err := w.uint(2 << (c - 0xde))
		return mpMap, n, err
	default:
		w.off--
		return 0, 0, w.fail("invalid msgpack type byte %#02x", c)
	}
	if lenSize > 0 {
		n, err := w.uint(lenSize)
		if err != nil {
			return 0, 0, err
		}
		payload += n
	}
	if err := w.need(payload, "value"); err != nil {
		return 0, 0, err
	}
	w.off += int(payload)
	return k, payload, nil
}

// value checks one value meant for a Go value of shape sh (nil: anything).
func (w *walker) value(sh *shape, depth int) error {
	if depth > maxDepth {
		return w.fail("nested deeper than %d", maxDepth)
	}
	start := w.off
	k, n, err := w.header()
	if err != nil {
		return err
	}
	switch k {
	case mpArray:
		// Every element takes at least one byte.
		if err := w.need(n, "array"); err != nil {
			return err
		}
		if sh != nil && sh.members && w.membersFast(start, n) {
			return nil
		}
		var elem *shape
		if sh != nil {
			elem = sh.elem
		}
		w.push("[]")
		defer w.pop()
		for i := uint64(0); i < n; i++ {
			if err := w.value(elem, depth+1); err != nil {
				return err
			}
		}
		return nil
	case mpMap:
		if err := w.need(2*n, "map"); err != nil {
			return err
		}
		if sh != nil && sh.fields != nil {
			return w.structFields(sh.fields, n, depth)
		}
		return w.anyEntries(n, depth)
	}
	if sh != nil && sh.fields != nil && k != mpNil && !sh.custom {
		w.off = start
		return w.fail("want a map, got msgpack type %#02x", w.b[start])
	}
	return nil
}

// membersFast checks a snapshot's members (n of them, the array's header
// at start) by decoding each as the encoder writes it, exactly (every
// field once, nothing else: proto.DecodeMembers), and hands them to the
// decoder, which then does not parse them again. Anything else, one
// member off, leaves the whole array to the field-by-field walk, which
// says what is wrong.
func (w *walker) membersFast(start int, n uint64) bool {
	if w.pre == nil {
		return false
	}
	ms, used, ok := proto.DecodeMembers(w.b[w.off:], n)
	if !ok {
		return false
	}
	w.off += used
	w.pre.Predecoded(start, w.off, ms)
	return true
}

// scalar skips a value that is neither an array nor a map, and reports
// whether it did; anything else (or trouble) is left to value.
func (w *walker) scalar() bool {
	start := w.off
	k, _, err := w.header()
	if err != nil || k == mpArray || k == mpMap {
		w.off = start
		return false
	}
	return true
}

func (w *walker) anyEntries(n uint64, depth int) error {
	w.push("{}")
	defer w.pop()
	for i := uint64(0); i < 2*n; i++ {
		if err := w.value(nil, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) structFields(fields *fieldSet, n uint64, depth int) error {
	var seen uint64 // bit i: fields.names[i] was given; no record struct has more than 64 fields
	next := 0
	for i := uint64(0); i < n; i++ {
		if next < len(fields.keys) && bytes.HasPrefix(w.b[w.off:], fields.keys[next]) && seen&(1<<next) == 0 {
			// The next field in order, as an encoder writes them: its
			// key's bytes compared whole.
			idx := next
			w.off += len(fields.keys[idx])
			seen |= 1 << idx
			next++
			if fields.shapes[idx] == nil && w.scalar() {
				continue
			}
			w.push(fields.names[idx])
			err := w.value(fields.shapes[idx], depth+1)
			w.pop()
			if err != nil {
				return err
			}
			continue
		}
		keyStart := w.off
		k, kn, err := w.header()
		if err != nil {
			return err
		}
		if k != mpStr {
			w.off = keyStart
			return w.fail("map key is not a string")
		}
		key := w.b[w.off-int(kn) : w.off]
		idx := next // an encoder writes the fields in order
		if idx >= len(fields.names) || fields.names[idx] != string(key) {
			idx = fields.lookup(key)
		}
		next = idx + 1
		if idx < 0 {
			w.off = keyStart
			return w.fail("unknown field %q", key)
		}
		if seen&(1<<idx) != 0 {
			w.off = keyStart
			return w.fail("field %q given twice", key)
		}
		seen |= 1 << idx
		if fields.shapes[idx] == nil && w.scalar() {
			continue // most fields: one header, nothing below it to check
		}
		w.push(fields.names[idx])
		err = w.value(fields.shapes[idx], depth+1)
		w.pop()
		if err != nil {
			return err
		}
	}
	var missing []string
	for i, name := range fields.names {
		if seen&(1<<i) == 0 && !fields.optional[i] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return w.fail("missing field(s) %s", strings.Join(missing, ", "))
	}
	return nil
}

// shape is what the walk expects of a value, from the Go type it is for:
// a struct's fields (encoded as a map), a slice's element. A nil shape
// takes any value. Shapes are built once, so that the walk makes no
// reflection call and no map lookup per value.
type shape struct {
	fields  *fieldSet // a struct (not time.Time), encoded as a map
	elem    *shape    // a slice's or array's element
	members bool      // proto.Members: see membersFast
	custom  bool      // the type decodes itself, maybe from something other than a map
}

type fieldSet struct {
	names    []string
	keys     [][]byte // the names as msgpack fixstr, as an encoder writes them
	shapes   []*shape
	optional []bool // tagged omitempty: a record of an earlier version may lack it
}

// lookup finds key among the names; a linear scan of a dozen short strings
// beats hashing here.
func (fs *fieldSet) lookup(key []byte) int {
	for i, name := range fs.names {
		if name == string(key) {
			return i
		}
	}
	return -1
}

// shapes holds every record kind's shape. It is computed once at start
// and only read afterwards.
var shapes = func() map[proto.Kind]*shape {
	m, memo := map[proto.Kind]*shape{}, map[reflect.Type]*shape{}
	for k := proto.KindSnapshot; k.Valid(); k++ {
		m[k] = shapeOf(reflect.TypeOf(proto.NewRecord(k)).Elem(), memo)
	}
	return m
}()

func shapeOf(t reflect.Type, memo map[reflect.Type]*shape) *shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem() // an optional struct is checked as the struct
	}
	if sh, ok := memo[t]; ok {
		return sh
	}
	switch {
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		elem := shapeOf(t.Elem(), memo)
		if elem == nil {
			return nil // []byte, [6]byte: anything goes for the decoder to judge
		}
		return &shape{elem: elem, members: t == membersType}
	case t.Kind() != reflect.Struct || t == timeType:
		return nil
	}
	sh := &shape{fields: &fieldSet{}, custom: reflect.PointerTo(t).Implements(customDecoder)}
	memo[t] = sh
	fs := sh.fields
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		if name == "-" {
			continue
		}
		fs.optional = append(fs.optional, slices.Contains(strings.Split(opts, ","), "omitempty"))
		if name == "" {
			name = f.Name
		}
		fs.names = append(fs.names, name)
		fs.keys = append(fs.keys, append([]byte{0xa0 | byte(len(name))}, name...)) // every name is under 32 bytes
		fs.shapes = append(fs.shapes, shapeOf(f.Type, memo))
	}
	return sh
}
