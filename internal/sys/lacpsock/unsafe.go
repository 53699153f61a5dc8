package lacpsock

import "unsafe"

// unsafePointer views a control message's payload as a C struct; the kernel
// wrote it with the platform's layout.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
