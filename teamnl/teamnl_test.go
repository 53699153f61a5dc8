package teamnl

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// The testdata are team.ko's replies on Debian's 6.1 kernel to the reads
// of two LAGs (2 ports each, Debian's teamd, the lacp runner), recorded in
// the lab (teamdwarm-lab -only kernel-reader -record teamnl/testdata run),
// and lags.json what the reader made of them there.

func recorded(t testing.TB, op string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", op+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(b) >= 4 {
		n := binary.BigEndian.Uint32(b)
		if int(n) > len(b)-4 {
			t.Fatalf("%s.bin: a message of %d bytes, %d left", op, n, len(b)-4)
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out
}

var family = genetlink.Family{ID: 0x1f, Version: familyVersion, Name: familyName}

// replay is a Conn on team.ko's recorded replies: each request gets the
// recorded messages of its command and team ifindex.
func replay(t testing.TB) *Conn {
	t.Helper()
	var genl []genetlink.Message
	for _, op := range []string{"ports", "options"} {
		for _, b := range recorded(t, op) {
			var m genetlink.Message
			if err := m.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			genl = append(genl, m)
		}
	}
	gc := genltest.Dial(genltest.ServeFamily(family, func(req genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
		want := teamIfindex(req.Data)
		var out []genetlink.Message
		for _, m := range genl {
			if m.Header.Command == req.Header.Command && teamIfindex(m.Data) == want {
				out = append(out, m)
			}
		}
		return out, nil
	}))
	// One dump of the links: the recording holds one per LAG read.
	var links []netlink.Message
	seen := map[uint32]bool{}
	for _, b := range recorded(t, "links") {
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if len(m.Data) < 8 {
			continue
		}
		idx := binary.NativeEndian.Uint32(m.Data[4:8])
		if seen[idx] {
			continue
		}
		seen[idx] = true
		m.Header.Flags &^= netlink.Multi // all in one read, no done message
		links = append(links, m)
	}
	rc := nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		if len(req) != 1 || req[0].Header.Type != unix.RTM_GETLINK {
			return nil, errors.New("want one RTM_GETLINK")
		}
		out := make([]netlink.Message, len(links))
		for i, m := range links {
			m.Header.Sequence, m.Header.PID = req[0].Header.Sequence, req[0].Header.PID
			out[i] = m
		}
		return out, nil
	})
	c, err := NewConn(gc, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func teamIfindex(b []byte) uint32 {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0
	}
	for ad.Next() {
		if ad.Type() == attrTeamIfindex {
			return ad.Uint32()
		}
	}
	return 0
}

func TestLAGFromTeamKo(t *testing.T) {
	b, err := os.ReadFile("testdata/lags.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []*proto.KernelLAG
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	c := replay(t)
	for _, w := range want {
		got, err := c.LAG(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s (-in the lab +here):\n%s", w.Name, diff)
		}
	}
	if _, err := c.LAG("PortChannel9"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("a missing device: %v, want ErrNoDevice", err)
	}
}

func TestOptionsFromTeamKo(t *testing.T) {
	c := replay(t)
	k, err := c.LAG("PortChannel1")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.Options(uint32(k.Ifindex))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Option{}
	perPort := 0
	for _, o := range opts {
		if o.Port == 0 {
			byName[o.Name] = o
		} else {
			perPort++
		}
	}
	// The lacp runner runs the kernel's loadbalance mode.
	if m := byName["mode"]; m.String == nil || *m.String != "loadbalance" {
		t.Errorf("option mode: %+v", m)
	}
	if perPort == 0 {
		t.Error("no per-port option")
	}
}

func TestNoTeamFamily(t *testing.T) {
	gc := genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT))
	})
	rc := nltest.Dial(func([]netlink.Message) ([]netlink.Message, error) { return nil, nil })
	_, err := NewConn(gc, rc)
	if !errors.Is(err, ErrNoTeamFamily) {
		t.Fatalf("NewConn without the family: %v, want ErrNoTeamFamily", err)
	}
	if k := Read(nil, err, "PortChannel1"); k.Read() || k.Err == "" {
		t.Fatalf("Read with no Conn: %+v", k)
	}
}

func TestDecodeOptionRejects(t *testing.T) {
	attrs := func(as ...netlink.Attribute) []byte { return nltest.MustMarshalAttributes(as) }
	name := netlink.Attribute{Type: attrOptionName, Data: []byte("enabled\x00")}
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"no type", attrs(name)},
		{"no name", attrs(netlink.Attribute{Type: attrOptionType, Data: []byte{nlaU32}})},
		{"short u32", attrs(name, netlink.Attribute{Type: attrOptionType, Data: []byte{nlaU32}}, netlink.Attribute{Type: attrOptionData, Data: []byte{1, 2}})},
		{"no data", attrs(name, netlink.Attribute{Type: attrOptionType, Data: []byte{nlaS32}})},
		{"unknown type", attrs(name, netlink.Attribute{Type: attrOptionType, Data: []byte{99}}, netlink.Attribute{Type: attrOptionData, Data: []byte{1}})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ad, err := netlink.NewAttributeDecoder(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if o, err := decodeOption(ad); err == nil {
				t.Fatalf("accepted: %+v", o)
			}
		})
	}
}

// The decoders take whatever the kernel (or a corrupted recording) hands
// them without a panic.
func FuzzDecodeLists(f *testing.F) {
	for _, op := range []string{"ports", "options"} {
		for _, b := range recorded(f, op) {
			f.Add(b[4:]) // the attributes after the generic netlink header
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeList(b, attrListPort, attrItemPort, func(ad *netlink.AttributeDecoder) error {
			for ad.Next() {
				_ = ad.Uint32()
			}
			return ad.Err()
		})
		_ = decodeList(b, attrListOption, attrItemOption, func(ad *netlink.AttributeDecoder) error {
			_, err := decodeOption(ad)
			return err
		})
	})
}
