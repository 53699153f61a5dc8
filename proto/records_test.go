package proto_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
)

func TestValidate(t *testing.T) {
	c := prototest.DefaultClock
	tests := []struct {
		name  string
		rec   func() proto.Record
		field string // "" means valid
	}{
		{"snapshot", func() proto.Record { return prototest.Snapshot("PortChannel1", 3, 2, c) }, ""},
		{"standby", func() proto.Record { return prototest.Standby("PortChannel1", 4, 2, c) }, ""},
		{"active", func() proto.Record { return prototest.Active("PortChannel1", 4, 2, c) }, ""},
		{"cutover", func() proto.Record { return prototest.Cutover(3, []string{"PortChannel1"}, c) }, ""},
		{"journal", func() proto.Record { return prototest.Journal(3, "a3", c) }, ""},
		{"active failover", func() proto.Record {
			a := prototest.Active("PortChannel1", 4, 2, c)
			a.Path, a.FromEpoch = proto.PathFailover, 0
			return a
		}, ""},
		{"snapshot schema", func() proto.Record { s := prototest.Snapshot("PortChannel1", 3, 2, c); s.Schema = 2; return s }, "schema"},
		{"snapshot lag", func() proto.Record { s := prototest.Snapshot("../etc", 3, 2, c); return s }, "lag"},
		{"snapshot epoch", func() proto.Record { return prototest.Snapshot("PortChannel1", 0, 2, c) }, "epoch"},
		{"snapshot digest", func() proto.Record { s := prototest.Snapshot("PortChannel1", 3, 2, c); s.ConfigDigest = ""; return s }, "config_digest"},
		{"member name", func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 3, 2, c)
			s.Members[1].Name = ""
			return s
		}, "members[1].name"},
		{"member twice", func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 3, 2, c)
			s.Members[1].Name = s.Members[0].Name
			return s
		}, "members[1].name"},
		{"member state", func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 3, 2, c)
			s.Members[0].State = "up"
			return s
		}, "members[0].state"},
		{"member states", func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 3, 2, c)
			s.Members[0].State, s.Members[1].State = "defaulted", "disabled"
			return s
		}, ""},
		{"member last_rx", func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 3, 2, c)
			s.Members[0].LastRx = s.Members[0].LastRx[:50]
			return s
		}, "members[0].last_rx"},
		{"member last_rx subtype", func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 3, 2, c)
			s.Members[1].LastRx = append([]byte(nil), s.Members[1].LastRx...)
			s.Members[1].LastRx[14] = 2 // a marker PDU's subtype, not LACP's
			return s
		}, "members[1].last_rx"},
		{"active path", func() proto.Record { a := prototest.Active("PortChannel1", 4, 2, c); a.Path = "magic"; return a }, "path"},
		{"active from", func() proto.Record { a := prototest.Active("PortChannel1", 4, 2, c); a.FromEpoch = 0; return a }, "from_epoch"},
		{"cutover epochs", func() proto.Record { x := prototest.Cutover(3, nil, c); x.ToEpoch = 5; return x }, "to_epoch"},
		{"cutover deadline", func() proto.Record { x := prototest.Cutover(3, nil, c); x.DeadlineMono = x.StartedMono; return x }, "deadline_mono"},
		{"cutover in waves", func() proto.Record { x := prototest.Cutover(3, []string{"PortChannel1"}, c); x.Window = 16; return x }, ""},
		{"cutover window", func() proto.Record { x := prototest.Cutover(3, []string{"PortChannel1"}, c); x.Window = -1; return x }, "window"},
		{"cutover waves unordered", func() proto.Record { x := prototest.Cutover(3, nil, c); x.Window = 16; return x }, "window"},
		{"journal operation", func() proto.Record { j := prototest.Journal(3, "a3", c); j.Operation = "dry-run"; return j }, "operation"},
		{"journal names", func() proto.Record { j := prototest.Journal(3, "a3", c); j.Backup = j.Container; return j }, "backup"},
		{"journal old", func() proto.Record { j := prototest.Journal(3, "a3", c); j.OldID = ""; return j }, "old_id"},
		{"journal epochs", func() proto.Record { j := prototest.Journal(3, "a3", c); j.ToEpoch = 3; return j }, "to_epoch"},
		{"journal stage", func() proto.Record { j := prototest.Journal(3, "", c); return j }, "stage"},
		{"journal done", func() proto.Record { j := prototest.Journal(3, proto.JournalDone, c); return j }, "result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rec().Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var fe *proto.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, proto.ErrInvalid) {
				t.Fatalf("want a *FieldError matching ErrInvalid, got %v", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("want field %q, got %q (%v)", tt.field, fe.Field, err)
			}
		})
	}
}

func TestFileNames(t *testing.T) {
	tests := []struct {
		name string
		lag  string
		kind proto.Kind
		ok   bool
	}{
		{"PortChannel1.snapshot", "PortChannel1", proto.KindSnapshot, true},
		{"PortChannel0001.standby", "PortChannel0001", proto.KindStandby, true},
		{"Po.1.active", "Po.1", proto.KindActive, true},
		{"cutover", "", proto.KindCutover, true},
		{"journal", "", proto.KindJournal, true},
		{"PortChannel1.cutover", "", 0, false},
		{"PortChannel1.journal", "", 0, false},
		{".PortChannel1.snapshot.tmp-0a1b", "", 0, false},
		{"PortChannel1", "", 0, false},
		{"Ethernet40", "", 0, false},
		{".snapshot", "", 0, false},
		{"a-name-that-is-too-long.active", "", 0, false},
	}
	for _, tt := range tests {
		lag, kind, ok := proto.ParseFileName(tt.name)
		if lag != tt.lag || kind != tt.kind || ok != tt.ok {
			t.Errorf("ParseFileName(%q) = %q, %v, %v; want %q, %v, %v", tt.name, lag, kind, ok, tt.lag, tt.kind, tt.ok)
		}
		if tt.ok {
			if got := proto.FileName(lag, kind); got != tt.name {
				t.Errorf("FileName(%q, %v) = %q, want %q", lag, kind, got, tt.name)
			}
		}
	}
}

func TestKernelLAGDiff(t *testing.T) {
	base := prototest.Kernel("PortChannel1", 2)
	tests := []struct {
		name string
		mod  func(k *proto.KernelLAG)
		want []string
	}{
		{"same", func(*proto.KernelLAG) {}, nil},
		{"carrier lost", func(k *proto.KernelLAG) { k.Carrier = false }, []string{"PortChannel1 carrier: on -> off"}},
		{"port disabled", func(k *proto.KernelLAG) { k.Ports[1].Enabled = false }, []string{"Ethernet4 enabled: on -> off"}},
		{"port gone", func(k *proto.KernelLAG) { k.Ports = k.Ports[:1] }, []string{"Ethernet4: gone"}},
		{"port added", func(k *proto.KernelLAG) {
			k.Ports = append(k.Ports, proto.KernelPort{Name: "Ethernet8"})
		}, []string{"Ethernet8: added"}},
		{"unreadable", func(k *proto.KernelLAG) { *k = proto.KernelLAG{Err: "no team family"} },
			[]string{"not comparable: read / unreadable (no team family)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := prototest.Kernel("PortChannel1", 2)
			tt.mod(o)
			if diff := cmp.Diff(tt.want, base.Diff(o)); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
		})
	}
}

// A LAG's wave is its place in the cutover's order, a window at a time.
func TestCutoverWave(t *testing.T) {
	lags := []string{"PortChannel1", "PortChannel2", "PortChannel3", "PortChannel4", "PortChannel5"}
	c := prototest.Cutover(3, lags, prototest.DefaultClock)
	for _, tc := range []struct {
		window int
		lag    string
		want   int
	}{
		{0, "PortChannel5", 0},
		{2, "PortChannel1", 0},
		{2, "PortChannel2", 0},
		{2, "PortChannel3", 1},
		{2, "PortChannel5", 2},
		{2, "PortChannel9", 0}, // not listed: not held back
		{16, "PortChannel5", 0},
	} {
		c.Window = tc.window
		if got := c.Wave(tc.lag); got != tc.want {
			t.Errorf("window %d: Wave(%s) = %d, want %d", tc.window, tc.lag, got, tc.want)
		}
	}
	for window, want := range map[int]int{0: 1, 1: 5, 2: 3, 5: 1, 16: 1} {
		c.Window = window
		if got := c.Waves(); got != want {
			t.Errorf("window %d: %d waves, want %d", window, got, want)
		}
	}
}
