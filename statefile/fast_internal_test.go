package statefile

import (
	"reflect"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
)

// Differential fuzzing of the members' fast paths: a snapshot body decodes
// to the same record, or fails, with them as without them (the msgpack
// package's calls and the field-by-field walk).
func FuzzFastBodyMatchesSlow(f *testing.F) {
	for _, n := range []int{0, 1, 2, 5} {
		b, err := Encode(prototest.Snapshot("PortChannel1", 7, n, prototest.DefaultClock))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[headerLen:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, slow := new(proto.Snapshot), new(proto.Snapshot)
		errFast, errSlow := decodeBody(body, fast, true), decodeBody(body, slow, false)
		if (errFast == nil) != (errSlow == nil) {
			t.Fatalf("fast: %v; slow: %v", errFast, errSlow)
		}
		if errFast == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast %+v\nslow %+v", fast, slow)
		}
	})
}
