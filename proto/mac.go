package proto

import (
	"fmt"
	"net"

	"github.com/vmihailenco/msgpack/v5"
)

// MAC is an EUI-48 hardware address. Unlike net.HardwareAddr it is a value
// type, so it compares with == and encodes to a fixed 6 bytes.
type MAC [6]byte

// ParseMAC parses "aa:bb:cc:dd:ee:ff" (or any EUI-48 form net.ParseMAC
// accepts).
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	if len(hw) != 6 {
		return MAC{}, fmt.Errorf("address %q: want 6 bytes, got %d", s, len(hw))
	}
	var m MAC
	copy(m[:], hw)
	return m, nil
}

// String returns the usual lower-case colon form, as teamd prints it.
func (m MAC) String() string {
	return net.HardwareAddr(m[:]).String()
}

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// MarshalText implements encoding.TextMarshaler (used by JSON output).
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// EncodeMsgpack stores m as 6 raw bytes (msgpack bin), not as text.
func (m MAC) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeBytes(m[:]) }

// DecodeMsgpack reads what EncodeMsgpack wrote; anything but 6 bytes is an
// error.
func (m *MAC) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return err
	}
	if n != len(m) {
		return fmt.Errorf("MAC address: %d bytes, want %d", n, len(m))
	}
	return dec.ReadFull(m[:])
}
