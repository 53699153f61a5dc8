package proto

import (
	"fmt"
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

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *Member) EncodeMsgpack(enc *msgpack.Encoder) error {
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

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *Member) DecodeMsgpack(dec *msgpack.Decoder) error {
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
