package statefile

import (
	"reflect"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/vmihailenco/msgpack/v5"
)

// Warm builds now what the msgpack package builds by reflection the first
// time a process encodes or decodes a record type: its table of each
// struct type's fields, and its encoder and decoder for each field. A shim
// calls it at start, so that its handoff (the old shim's snapshot, the
// standby's decoding of it and its .active, each a first in its process)
// does not do it in the cutover, where it costs a few hundred
// microseconds of a CPU that a switch's handoffs share, and lies on the
// takeover's critical path.
func Warm() {
	for k := proto.KindSnapshot; k.Valid(); k++ {
		rec := proto.NewRecord(k)
		fill(reflect.ValueOf(rec).Elem(), 0)
		if b, err := msgpack.Marshal(rec); err == nil {
			_ = msgpack.Unmarshal(b, proto.NewRecord(k))
		}
	}
}

// fill gives every pointer and slice that v (settable) holds or reaches a
// zero element, so that encoding v visits every struct type a record can
// hold. Byte slices and times are values to msgpack, not structs.
func fill(v reflect.Value, depth int) {
	if depth > maxDepth {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fill(v.Elem(), depth+1)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		fill(v.Index(0), depth+1)
	case reflect.Struct:
		if v.Type() == timeType {
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth+1)
			}
		}
	}
}
