package teamd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve answers every connection to a fresh socket with reply(request).
func serve(t *testing.T, reply func(req []byte) []byte) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "PortChannel1.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if r := reply(buf[:n]); r != nil {
					_, _ = c.Write(r)
				}
				_, _ = c.Read(buf) // until the client hangs up
			}()
		}
	}()
	return NewClient(path)
}

// A reply of any size up to the bound arrives whole: the client reads the
// record's length before it reads the record.
func TestCallReadsWholeReplies(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 60 << 10, 100 << 10} { // a 64-port StateDump is ~60 KiB
		payload := strings.Repeat("x", size)
		c := serve(t, func([]byte) []byte { return Success(payload) })
		got, err := c.Call(context.Background(), MethodStateDump)
		if err != nil || got != payload {
			t.Errorf("%d bytes: got %d bytes, %v", size, len(got), err)
		}
	}
}

// No reply within the context's deadline is the deadline's error.
func TestCallTimesOut(t *testing.T) {
	silent := serve(t, func([]byte) []byte { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := silent.Call(ctx, MethodStateDump); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no reply: %v, want the deadline", err)
	}
}
