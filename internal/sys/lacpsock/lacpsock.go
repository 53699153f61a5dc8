// Package lacpsock sends and receives Slow Protocols frames (LACPDUs) on one
// network interface through an AF_PACKET socket, as teamd's lacp runner does.
//
// A Conn from Listen sees the frames that arrive on the interface: the
// stand-in and the test bed's wire observer read those. A Conn from Watch
// also sees, flagged Outgoing, the frames this host sends on it (the kernel
// copies outgoing frames only to sockets of all protocols, so Watch binds
// to ETH_P_ALL with a BPF filter for Slow Protocols): the shim's takeover
// confirmation reads those. A Conn from Sent sees only those: a wait for a
// speaker's next PDU (NextRound) is not woken by the partner's. A reader
// that needs only the latest frame now and then leaves them queued and
// reads them in a batch (Drain), rather than being woken by each.
//
// # Network namespaces
//
// A socket belongs to the namespace of the thread that created it; open it
// inside the wanted namespace (see integration's netns helper) and use it
// from anywhere.
package lacpsock

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// Conn is an AF_PACKET socket bound to one interface and ethertype 0x8809.
type Conn struct {
	f       *os.File
	ifindex int
	ifname  string
	mac     proto.MAC
}

// Frame is one received frame.
type Frame struct {
	Data     []byte
	At       time.Time // kernel receive timestamp
	Outgoing bool      // sent by this host, not received
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Listen opens a socket on the interface named ifname in the calling
// thread's network namespace and joins the Slow Protocols multicast group.
func Listen(ifname string) (*Conn, error) { return open(ifname, proto.EtherTypeSlow, slowOnly, true) }

// Watch is Listen that also sees this host's outgoing Slow Protocols frames
// on the interface (Frame.Outgoing).
func Watch(ifname string) (*Conn, error) { return open(ifname, unix.ETH_P_ALL, slowOnly, true) }

// Sent opens a socket that sees only the Slow Protocols frames this host
// sends on the interface (Frame.Outgoing is always true), for NextRound.
func Sent(ifname string) (*Conn, error) { return open(ifname, unix.ETH_P_ALL, slowSent, false) }

// slowOnly is a classic BPF program: accept frames of ethertype 0x8809.
var slowOnly = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(proto.EtherTypeSlow)},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// skfPkttype is the offset of classic BPF's ancillary load of the frame's
// packet type: SKF_AD_OFF (-0x1000) + SKF_AD_PKTTYPE (4), linux/filter.h.
const skfPkttype = 0xfffff000 + 4

// slowSent is slowOnly for the frames this host sends (PACKET_OUTGOING).
var slowSent = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: uint32(proto.EtherTypeSlow)},
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfPkttype},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.PACKET_OUTGOING},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// Iface is what this package needs of an interface.
type Iface struct {
	Index int
	MAC   proto.MAC
	Up    bool
}

// Interface looks the interface named name up in the calling thread's
// network namespace, by ioctl: net.InterfaceByName dumps every link of the
// namespace to find one, which on a switch's hundreds of ports made a
// socket's open and a StateDump cost milliseconds each.
func Interface(name string) (Iface, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Iface{}, fmt.Errorf("lacpsock: %s: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return Iface{}, fmt.Errorf("lacpsock: %s: %w", name, err)
	}
	var ifi Iface
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return Iface{}, fmt.Errorf("lacpsock: %s: %w", name, err)
	}
	ifi.Index = int(ifr.Uint32())
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return Iface{}, fmt.Errorf("lacpsock: %s: flags: %w", name, err)
	}
	ifi.Up = ifr.Uint16()&unix.IFF_UP != 0
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return Iface{}, fmt.Errorf("lacpsock: %s: hardware address: %w", name, err)
	}
	ifi.MAC = ifreqHWAddr(ifr)
	return ifi, nil
}

// open binds a socket to ethertype on ifname behind filter; join adds the
// Slow Protocols multicast group, which only frames received need.
func open(ifname string, ethertype uint16, filter []unix.SockFilter, join bool) (*Conn, error) {
	ifi, err := Interface(ifname)
	if err != nil {
		return nil, err
	}
	// Protocol 0: nothing is delivered until bind, after the filter is on.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("lacpsock: %s: socket: %w", ifname, err)
	}
	fail := func(op string, err error) (*Conn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("lacpsock: %s: %s: %w", ifname, op, err)
	}
	if err := attach(fd, filter); err != nil {
		return fail("attach filter", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethertype), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	if join {
		mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
		copy(mreq.Address[:], proto.SlowProtocolsMAC[:])
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fail("join multicast", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("SO_TIMESTAMPNS", err)
	}
	c := &Conn{f: os.NewFile(uintptr(fd), "lacp:"+ifname), ifindex: ifi.Index, ifname: ifname, mac: ifi.MAC}
	return c, nil
}

// attach sets fd's BPF filter; a filter replaced takes effect at once
// (unlike a new bind, without waiting for an RCU grace period).
func attach(fd int, filter []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

// Ifindex is the interface's index; MAC its hardware address.
func (c *Conn) Ifindex() int   { return c.ifindex }
func (c *Conn) MAC() proto.MAC { return c.mac }
func (c *Conn) Name() string   { return c.ifname }

// ErrClosed is returned by Read and Write after Close.
var ErrClosed = errors.New("lacpsock: closed")

// Read blocks until a frame arrives, the Conn is closed (ErrClosed) or
// the read deadline passes (os.ErrDeadlineExceeded).
func (c *Conn) Read(buf []byte) (Frame, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return Frame{}, ErrClosed
	}
	var (
		fr   Frame
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		fr, rerr = recv(int(fd), buf)
		return rerr != unix.EAGAIN
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Frame{}, err
	case err != nil:
		// RawConn.Read fails otherwise only once the file is closed
		// (poll's "use of closed file", which is not os.ErrClosed).
		return Frame{}, ErrClosed
	}
	return fr, rerr
}

// SetReadDeadline bounds Read as os.File's does; a zero t removes the
// bound.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// Drain reads the frames queued on c now, without waiting for more, and
// calls fn with each in turn (fr.Data is buf's, valid during the call).
// lost says that the kernel dropped frames for want of room in the queue
// since the last Drain, so what was read is not all that came. A reader
// that drains now and then rather than reading as frames come is not
// woken by each of them.
func (c *Conn) Drain(buf []byte, fn func(fr Frame)) (lost bool, err error) {
	cerr := c.control(func(fd int) {
		// The counters count since the last ask: one ask per Drain.
		st, serr := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if serr != nil {
			err = fmt.Errorf("lacpsock: %s: drops: %w", c.ifname, serr)
			return
		}
		lost = st.Drops > 0
		for {
			fr, rerr := recv(fd, buf)
			if rerr == unix.EAGAIN {
				return
			}
			if rerr != nil {
				err = fmt.Errorf("lacpsock: %s: %w", c.ifname, rerr)
				return
			}
			fn(fr)
		}
	})
	if cerr != nil {
		return false, cerr
	}
	return lost, err
}

// SentOnly narrows c to the frames this host sends, as a Conn from Sent:
// a reader that has no more use for the partner's frames is no longer
// woken by them, and they no longer fill its queue.
func (c *Conn) SentOnly() error {
	var err error
	if cerr := c.control(func(fd int) { err = attach(fd, slowSent) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("lacpsock: %s: attach filter: %w", c.ifname, err)
	}
	return nil
}

// control runs fn with c's descriptor, which stays open meanwhile;
// ErrClosed once c is closed.
func (c *Conn) control(fn func(fd int)) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return ErrClosed
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		return ErrClosed
	}
	return nil
}

// recv reads one frame from fd, which does not block (unix.EAGAIN: none
// is queued).
func recv(fd int, buf []byte) (Frame, error) {
	var oob [64]byte
	n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob[:], 0)
	if err != nil {
		return Frame{}, err
	}
	fr := Frame{Data: buf[:n], At: timestamp(oob[:oobn])}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		fr.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
	}
	return fr, nil
}

func timestamp(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				ts := *(*unix.Timespec)(unsafePointer(m.Data))
				return time.Unix(ts.Unix())
			}
		}
	}
	return time.Now()
}

// Write sends one complete frame (Ethernet header included).
func (c *Conn) Write(frame []byte) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return ErrClosed
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), frame, 0, &unix.SockaddrLinklayer{Ifindex: c.ifindex, Halen: 6, Addr: [8]byte{0x01, 0x80, 0xc2, 0, 0, 0x02}})
		return werr != unix.EAGAIN
	})
	if err != nil {
		return ErrClosed
	}
	if werr != nil {
		return fmt.Errorf("lacpsock: %s: send: %w", c.ifname, werr)
	}
	return nil
}

// Close closes the socket; a blocked Read returns ErrClosed.
func (c *Conn) Close() error { return c.f.Close() }
