// Package teamnl reads the kernel's view of a LAG: the ports of a team
// device and their options from the kernel's "team" generic netlink family
// (drivers/net/team/team_nl.c, include/uapi/linux/if_team.h), and the link
// state of the device and its ports from rtnetlink. It is what the data
// plane follows, so it is what a handoff must leave unchanged.
//
// It only reads. Every call needs CAP_NET_ADMIN, even a read, and is made
// in the network namespace the Conn was dialled in.
//
// # No team family
//
// A kernel without team.ko loaded (a CI host, say) has no "team" family:
// Dial then fails with an error matching ErrNoTeamFamily, and Read gives a
// proto.KernelLAG that says so. Callers go on without the kernel's view;
// nothing may fail only because the kernel cannot be read.
//
// # Testing
//
// NewConn takes connections from genltest and nltest, so that the
// decoders run on messages recorded from team.ko (testdata/).
package teamnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
	"golang.org/x/sys/unix"
)

// ErrNoTeamFamily is matched (errors.Is) when the kernel has no team
// generic netlink family: team.ko is not loaded, or the kernel has none.
var ErrNoTeamFamily = errors.New("the kernel has no team generic netlink family (team.ko not loaded)")

// ErrNoDevice is matched when the named team device does not exist.
var ErrNoDevice = errors.New("no such team device")

// The family's constants (include/uapi/linux/if_team.h).
const (
	familyName    = "team"
	familyVersion = 1

	cmdOptionsGet  = 2
	cmdPortListGet = 3

	attrTeamIfindex = 1
	attrListOption  = 2
	attrListPort    = 3

	attrItemOption = 1
	attrItemPort   = 1

	attrOptionName        = 1
	attrOptionChanged     = 2
	attrOptionType        = 3
	attrOptionData        = 4
	attrOptionRemoved     = 5
	attrOptionPortIfindex = 6
	attrOptionArrayIndex  = 7

	attrPortIfindex = 1
	attrPortChanged = 2
	attrPortLinkup  = 3
	attrPortSpeed   = 4
	attrPortDuplex  = 5
	attrPortRemoved = 6
)

// The netlink attribute types the kernel names option types with
// (include/net/netlink.h).
const (
	nlaU32    = 3
	nlaString = 5
	nlaFlag   = 6
	nlaBinary = 11
	nlaS32    = 14
)

// Conn reads team devices. It is not safe for concurrent use.
type Conn struct {
	genl   *genetlink.Conn
	family genetlink.Family
	rt     *netlink.Conn
	trace  func(op string, msgs [][]byte)
}

// SetTrace hands f every reply the Conn decodes, as it came, by operation:
// "ports", "options" (generic netlink messages: header and attributes) or
// "links" (whole netlink messages). The lab records team.ko's replies with
// it, for the decoders' tests.
func (c *Conn) SetTrace(f func(op string, msgs [][]byte)) { c.trace = f }

func (c *Conn) traceGenl(op string, msgs []genetlink.Message) {
	if c.trace == nil {
		return
	}
	var raw [][]byte
	for _, m := range msgs {
		if b, err := m.MarshalBinary(); err == nil {
			raw = append(raw, b)
		}
	}
	c.trace(op, raw)
}

// Dial opens the two netlink sockets in the calling thread's network
// namespace and looks the team family up. The error matches
// ErrNoTeamFamily when the kernel has none.
func Dial() (*Conn, error) {
	genl, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("teamnl: generic netlink: %w", err)
	}
	rt, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		genl.Close()
		return nil, fmt.Errorf("teamnl: rtnetlink: %w", err)
	}
	c, err := NewConn(genl, rt)
	if err != nil {
		genl.Close()
		rt.Close()
		return nil, err
	}
	return c, nil
}

// NewConn is Dial with connections the caller made (genltest's and
// nltest's in tests). Close closes them.
func NewConn(genl *genetlink.Conn, rt *netlink.Conn) (*Conn, error) {
	f, err := genl.GetFamily(familyName)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("teamnl: %w", ErrNoTeamFamily)
		}
		return nil, fmt.Errorf("teamnl: family %q: %w", familyName, err)
	}
	return &Conn{genl: genl, family: f, rt: rt}, nil
}

// Close closes the sockets.
func (c *Conn) Close() error {
	return errors.Join(c.genl.Close(), c.rt.Close())
}

// PortAttrs is one port as TEAM_CMD_PORT_LIST_GET reports it.
type PortAttrs struct {
	Ifindex uint32
	Changed bool
	LinkUp  bool
	Speed   uint32 // Mb/s
	Duplex  uint8  // 0 half, 1 full
	Removed bool
}

// Ports lists the ports of the team device ifindex.
func (c *Conn) Ports(ifindex uint32) ([]PortAttrs, error) {
	msgs, err := c.execute(cmdPortListGet, ifindex)
	if err != nil {
		return nil, fmt.Errorf("teamnl: port list of ifindex %d: %w", ifindex, err)
	}
	c.traceGenl("ports", msgs)
	var out []PortAttrs
	for _, m := range msgs {
		err := decodeList(m.Data, attrListPort, attrItemPort, func(ad *netlink.AttributeDecoder) error {
			var p PortAttrs
			for ad.Next() {
				switch ad.Type() {
				case attrPortIfindex:
					p.Ifindex = ad.Uint32()
				case attrPortChanged:
					p.Changed = true
				case attrPortLinkup:
					p.LinkUp = true
				case attrPortSpeed:
					p.Speed = ad.Uint32()
				case attrPortDuplex:
					p.Duplex = ad.Uint8()
				case attrPortRemoved:
					p.Removed = true
				}
			}
			if err := ad.Err(); err != nil {
				return err
			}
			if p.Ifindex == 0 {
				return errors.New("port without an ifindex")
			}
			out = append(out, p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("teamnl: port list of ifindex %d: %w", ifindex, err)
		}
	}
	return out, nil
}

// Option is one option of a team device, or of one of its ports.
type Option struct {
	Name string
	// Port is the port's ifindex for a per-port option, 0 for the device's.
	Port uint32
	// ArrayIndex is set for an array option.
	ArrayIndex *uint32
	Changed    bool
	Removed    bool
	// The value, by type: one of these is set.
	Bool   *bool
	U32    *uint32
	S32    *int32
	String *string
	Binary []byte
}

// Options lists the options of the team device ifindex and its ports.
func (c *Conn) Options(ifindex uint32) ([]Option, error) {
	msgs, err := c.execute(cmdOptionsGet, ifindex)
	if err != nil {
		return nil, fmt.Errorf("teamnl: options of ifindex %d: %w", ifindex, err)
	}
	c.traceGenl("options", msgs)
	var out []Option
	for _, m := range msgs {
		err := decodeList(m.Data, attrListOption, attrItemOption, func(ad *netlink.AttributeDecoder) error {
			o, err := decodeOption(ad)
			if err != nil {
				return err
			}
			out = append(out, o)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("teamnl: options of ifindex %d: %w", ifindex, err)
		}
	}
	return out, nil
}

func decodeOption(ad *netlink.AttributeDecoder) (Option, error) {
	var o Option
	var typ uint8
	var data []byte
	haveType, haveData := false, false
	for ad.Next() {
		switch ad.Type() {
		case attrOptionName:
			o.Name = ad.String()
		case attrOptionChanged:
			o.Changed = true
		case attrOptionType:
			typ, haveType = ad.Uint8(), true
		case attrOptionData:
			data, haveData = ad.Bytes(), true
		case attrOptionRemoved:
			o.Removed = true
		case attrOptionPortIfindex:
			o.Port = ad.Uint32()
		case attrOptionArrayIndex:
			i := ad.Uint32()
			o.ArrayIndex = &i
		}
	}
	if err := ad.Err(); err != nil {
		return o, err
	}
	if o.Name == "" || !haveType {
		return o, fmt.Errorf("option %q without a name or a type", o.Name)
	}
	if typ != nlaFlag && !haveData {
		return o, fmt.Errorf("option %s: no data", o.Name)
	}
	size := func(n int) error {
		if len(data) != n {
			return fmt.Errorf("option %s: %d data bytes, want %d", o.Name, len(data), n)
		}
		return nil
	}
	switch typ {
	case nlaFlag: // a bool: the data attribute is there when it is true
		v := haveData
		o.Bool = &v
	case nlaU32:
		if err := size(4); err != nil {
			return o, err
		}
		v := binary.NativeEndian.Uint32(data)
		o.U32 = &v
	case nlaS32:
		if err := size(4); err != nil {
			return o, err
		}
		v := int32(binary.NativeEndian.Uint32(data))
		o.S32 = &v
	case nlaString:
		v := string(data)
		if i := slices.Index(data, 0); i >= 0 {
			v = string(data[:i])
		}
		o.String = &v
	case nlaBinary:
		o.Binary = slices.Clone(data)
	default:
		return o, fmt.Errorf("option %s: unknown type %d", o.Name, typ)
	}
	return o, nil
}

// decodeList walks "[list] [item] attrs... [item] attrs..." and calls item
// on each item's attributes.
func decodeList(b []byte, listType, itemType uint16, item func(*netlink.AttributeDecoder) error) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != listType {
			continue
		}
		ad.Nested(func(lad *netlink.AttributeDecoder) error {
			for lad.Next() {
				if lad.Type() == itemType {
					lad.Nested(item)
				}
			}
			return lad.Err()
		})
	}
	return ad.Err()
}

func (c *Conn) execute(cmd uint8, ifindex uint32) ([]genetlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrTeamIfindex, ifindex)
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return c.genl.Execute(genetlink.Message{Header: genetlink.Header{Command: cmd, Version: familyVersion}, Data: data},
		c.family.ID, netlink.Request)
}

// Links dumps every link of the namespace, as rtnetlink's RTM_GETLINK.
func (c *Conn) Links() ([]rtnetlink.LinkMessage, error) {
	req, err := (&rtnetlink.LinkMessage{}).MarshalBinary()
	if err != nil {
		return nil, err
	}
	msgs, err := c.rt.Execute(netlink.Message{Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump}, Data: req})
	if err != nil {
		return nil, fmt.Errorf("teamnl: links: %w", err)
	}
	if c.trace != nil {
		var raw [][]byte
		for _, m := range msgs {
			if b, err := m.MarshalBinary(); err == nil {
				raw = append(raw, b)
			}
		}
		c.trace("links", raw)
	}
	out := make([]rtnetlink.LinkMessage, 0, len(msgs))
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK {
			continue
		}
		var lm rtnetlink.LinkMessage
		if err := lm.UnmarshalBinary(m.Data); err != nil {
			return nil, fmt.Errorf("teamnl: link message: %w", err)
		}
		out = append(out, lm)
	}
	return out, nil
}

// LAG reads the kernel's view of the team device named name: its state and
// carrier, and each port's enabled state, link and carrier, ports in
// teamd.CompareNames order. The error matches ErrNoDevice if there is no
// such device.
func (c *Conn) LAG(name string) (*proto.KernelLAG, error) {
	links, err := c.Links()
	if err != nil {
		return nil, err
	}
	byIndex := map[uint32]*rtnetlink.LinkMessage{}
	var team *rtnetlink.LinkMessage
	for i := range links {
		l := &links[i]
		byIndex[l.Index] = l
		if l.Attributes != nil && l.Attributes.Name == name {
			team = l
		}
	}
	if team == nil {
		return nil, fmt.Errorf("teamnl: %s: %w", name, ErrNoDevice)
	}
	k := &proto.KernelLAG{Name: name, Ifindex: int(team.Index), Up: team.Flags&unix.IFF_UP != 0,
		Carrier: team.Flags&unix.IFF_LOWER_UP != 0}
	ports, err := c.Ports(team.Index)
	if err != nil {
		return nil, err
	}
	opts, err := c.Options(team.Index)
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		if p.Removed {
			continue
		}
		kp := proto.KernelPort{Ifindex: int(p.Ifindex), LinkUp: p.LinkUp}
		if l := byIndex[p.Ifindex]; l != nil {
			kp.Carrier = l.Flags&unix.IFF_LOWER_UP != 0
			if l.Attributes != nil {
				kp.Name = l.Attributes.Name
			}
		}
		for _, o := range opts {
			if o.Port != p.Ifindex || o.Bool == nil {
				continue
			}
			switch o.Name {
			case "enabled":
				kp.Enabled = *o.Bool
			case "user_linkup":
				kp.UserLinkup = *o.Bool
			case "user_linkup_enabled":
				kp.UserLinkupEnabled = *o.Bool
			}
		}
		k.Ports = append(k.Ports, kp)
	}
	slices.SortFunc(k.Ports, func(a, b proto.KernelPort) int { return teamd.CompareNames(a.Name, b.Name) })
	return k, nil
}

// Read is LAG for a record: it never fails, and says in Err why the kernel
// could not be read. c may be nil (Dial failed: dialErr says why).
func Read(c *Conn, dialErr error, name string) *proto.KernelLAG {
	if c == nil {
		if dialErr == nil {
			dialErr = errors.New("not dialled")
		}
		return &proto.KernelLAG{Name: name, Err: dialErr.Error()}
	}
	k, err := c.LAG(name)
	if err != nil {
		return &proto.KernelLAG{Name: name, Err: err.Error()}
	}
	return k
}
