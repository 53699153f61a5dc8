package lacpsock

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// Interface agrees with the standard library's (full dump) view of every
// interface of this namespace.
func TestInterfaceAgreesWithNet(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Fatalf("net.Interfaces: %v (%d)", err, len(ifs))
	}
	for _, want := range ifs {
		got, err := Interface(want.Name)
		if err != nil {
			t.Errorf("%s: %v", want.Name, err)
			continue
		}
		if got.Index != want.Index || got.Up != (want.Flags&net.FlagUp != 0) {
			t.Errorf("%s: index %d up %v, want %d %v", want.Name, got.Index, got.Up, want.Index, want.Flags&net.FlagUp != 0)
		}
		if len(want.HardwareAddr) == 6 && !bytes.Equal(got.MAC[:], want.HardwareAddr) {
			t.Errorf("%s: MAC %x, want %s", want.Name, got.MAC, want.HardwareAddr)
		}
	}
	if _, err := Interface("nosuch0"); !errors.Is(err, unix.ENODEV) {
		t.Errorf("a missing interface: %v, want ENODEV", err)
	}
}
