package statefile

import (
	"reflect"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/vmihailenco/msgpack/v5"
)

// Warm reaches every struct type a record can hold: fill leaves no
// pointer nil and no slice empty (but bytes), and the filled record
// encodes and decodes whole, so that no type after a failing one is left
// cold.
func TestWarmReachesEveryStructType(t *testing.T) {
	for k := proto.KindSnapshot; k.Valid(); k++ {
		t.Run(k.String(), func(t *testing.T) {
			rec := proto.NewRecord(k)
			fill(reflect.ValueOf(rec).Elem(), 0)
			var walk func(v reflect.Value, path string)
			walk = func(v reflect.Value, path string) {
				switch v.Kind() {
				case reflect.Pointer:
					if v.IsNil() {
						t.Errorf("%s: nil", path)
						return
					}
					walk(v.Elem(), path)
				case reflect.Slice:
					if v.Type().Elem().Kind() != reflect.Uint8 {
						if v.Len() == 0 {
							t.Errorf("%s: empty", path)
							return
						}
						walk(v.Index(0), path+"[0]")
					}
				case reflect.Struct:
					for i := range v.NumField() {
						if f := v.Type().Field(i); f.IsExported() {
							walk(v.Field(i), path+"."+f.Name)
						}
					}
				}
			}
			walk(reflect.ValueOf(rec).Elem(), k.String())
			b, err := msgpack.Marshal(rec)
			if err != nil {
				t.Fatalf("the filled record does not encode: %v", err)
			}
			if err := msgpack.Unmarshal(b, proto.NewRecord(k)); err != nil {
				t.Fatalf("the filled record does not decode: %v", err)
			}
		})
	}
	Warm() // and it runs
}
