package lacpsock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// unsafePointer views a control message's payload as a C struct; the kernel
// wrote it with the platform's layout.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// ifreqHWAddr is the hardware address SIOCGIFHWADDR wrote into ifr: the
// struct sockaddr in its union (after the 16-byte name), past sa_family.
func ifreqHWAddr(ifr *unix.Ifreq) (mac [6]byte) {
	raw := (*[unix.IFNAMSIZ + 24]byte)(unsafe.Pointer(ifr))
	copy(mac[:], raw[unix.IFNAMSIZ+2:])
	return mac
}
