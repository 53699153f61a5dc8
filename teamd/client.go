package teamd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRunDir is teamd's run directory in SONiC's build.
const DefaultRunDir = "/var/run/teamd"

// DefaultTimeout bounds a call whose context has no deadline; teamdctl
// waits 5 s for a reply that teamd may never send.
const DefaultTimeout = 5 * time.Second

// maxMessage bounds a reply: a StateDump of 64 ports is ~60 KiB.
const maxMessage = 1 << 20

// SocketPath is where teamd for team device team listens.
func SocketPath(runDir, team string) string {
	if runDir == "" {
		runDir = DefaultRunDir
	}
	return filepath.Join(runDir, team+".sock")
}

// Client calls one teamd. The zero value is not usable; use NewClient.
type Client struct {
	path string
}

// New returns a client for the socket at path (see SocketPath).
func NewClient(path string) *Client { return &Client{path: path} }

// Path is the socket path.
func (c *Client) Path() string { return c.path }

// Call sends one request on a fresh connection and returns the success
// payload. An error reply is a *Error; no reply within the context's
// deadline (DefaultTimeout if it has none) is a timeout error matching
// errors.Is(err, context.DeadlineExceeded).
func (c *Client) Call(ctx context.Context, method string, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", c.path)
	if err != nil {
		return "", fmt.Errorf("teamd %s: %w", method, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(EncodeRequest(method, args...)); err != nil {
		return "", fmt.Errorf("teamd %s: %w", method, ctxErr(ctx, err))
	}
	// A SOCK_SEQPACKET read with a short buffer truncates the record, and
	// one of maxMessage for every call (a shim asks every 2 s) made the
	// allocation and its zeroing most of a call's cost: the reply's
	// length is peeked first.
	size, err := replyLen(conn.(*net.UnixConn))
	if err != nil {
		return "", fmt.Errorf("teamd %s: no reply: %w", method, ctxErr(ctx, err))
	}
	if size > maxMessage {
		return "", fmt.Errorf("teamd %s: a reply of %d bytes, more than the %d a teamd sends", method, size, maxMessage)
	}
	buf := make([]byte, max(size, 1))
	n, err := conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("teamd %s: no reply: %w", method, ctxErr(ctx, err))
	}
	return ParseReply(method, buf[:n])
}

// replyLen waits for the next record on c and returns its length, leaving
// it to be read (MSG_PEEK|MSG_TRUNC: the whole record's length, whatever
// the buffer). The connection's deadline applies.
func replyLen(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var one [1]byte
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_TRUNC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// StateDump returns teamd's state (teamdctl <team> state dump).
func (c *Client) StateDump(ctx context.Context) (*State, error) {
	s, err := c.Call(ctx, MethodStateDump)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return nil, fmt.Errorf("teamd StateDump: %w", err)
	}
	return &st, nil
}

// PortAdd adds a port (teamdctl <team> port add <ifname>).
func (c *Client) PortAdd(ctx context.Context, ifname string) error {
	_, err := c.Call(ctx, MethodPortAdd, ifname)
	return err
}

// PortConfigUpdate sets a port's config (teamdctl <team> port config update).
func (c *Client) PortConfigUpdate(ctx context.Context, ifname, config string) error {
	_, err := c.Call(ctx, MethodPortConfigUpdate, ifname, config)
	return err
}

// StateItemValueGet reads one state item, e.g. "setup.pid".
func (c *Client) StateItemValueGet(ctx context.Context, path string) (string, error) {
	return c.Call(ctx, MethodStateItemValueGet, path)
}

// OneLine reformats a JSON payload the way libteam's teamdctl -o prints it
// (jansson without indentation): one line, ", " between members and ": "
// after keys, key order kept.
func OneLine(payload []byte) ([]byte, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, payload); err != nil {
		return nil, err
	}
	out := make([]byte, 0, compact.Len()+compact.Len()/8)
	inString, escaped := false, false
	for _, c := range compact.Bytes() {
		out = append(out, c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out, nil
}
