package inspect

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
)

func TestFileTells(t *testing.T) {
	dir := t.TempDir()
	c := prototest.DefaultClock
	snap := prototest.Snapshot("PortChannel1", 1, 2, c)
	d, err := statefile.OpenDir(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := d.Write(snap)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		typ     string // "" if it must fail
		members int
		unknown bool // the failure is ErrUnknownFile
	}{
		{"record", rec, TypeRecord, 2, false},
		{"port dump", write("Ethernet0", snap.Members[0].LastRx), TypePortDump, 0, false},
		{"LAG dump", write("PortChannel1", snap.LAGDump), TypeLAGDump, 2, false},
		{"port dump cut short", write("Ethernet4", snap.Members[1].LastRx[:100]), "", 0, true},
		{"port dump with a bad TLV", write("Ethernet8", append(append([]byte{}, snap.Members[1].LastRx[:16]...), make([]byte, 108)...)), "", 0, false},
		{"anything else", write("notes.txt", []byte("hello\n")), "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, err := File(tt.path, c.Wall)
			if tt.typ == "" {
				if err == nil {
					t.Fatalf("want an error, got %+v", it)
				}
				if got := errors.Is(err, ErrUnknownFile); got != tt.unknown {
					t.Fatalf("errors.Is(err, ErrUnknownFile) = %v, want %v: %v", got, tt.unknown, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if it.Type != tt.typ || it.Members != tt.members {
				t.Fatalf("type %q members %d, want %q %d", it.Type, it.Members, tt.typ, tt.members)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	c := prototest.DefaultClock
	a := prototest.Snapshot("PortChannel1", 1, 2, c)
	if diffs, n, err := Diff(a, prototest.Snapshot("PortChannel1", 1, 2, c)); err != nil || len(diffs) != 0 || n != 2 {
		t.Fatalf("same records: %v, %d members, %v", diffs, n, err)
	}
	b := prototest.Snapshot("PortChannel1", 1, 2, c)
	b.Members[1].Selected = false
	diffs, _, err := Diff(a, b)
	if err != nil || len(diffs) != 1 || diffs[0] != (Difference{"Ethernet4", "selected", "yes", "no"}) {
		t.Fatalf("selection change: %+v, %v", diffs, err)
	}
	if _, _, err := Diff(a, prototest.Cutover(1, nil, c)); err == nil {
		t.Fatal("a cutover compared without an error")
	}
}

// A record's teamd and kernel views are shown, and whether the takeover
// left the kernel's LAG as it was.
func TestShowsTeamdAndKernel(t *testing.T) {
	c := prototest.DefaultClock
	a := prototest.Active("PortChannel1", 2, 2, c)
	a.Teamd, a.KernelBefore, a.Kernel = prototest.Teamd(), prototest.Kernel("PortChannel1", 2), prototest.Kernel("PortChannel1", 2)
	a.Kernel.Ports[1].Enabled = false
	var it Item
	it.SetRecord(a, c.Wall)
	var out strings.Builder
	WriteItem(&out, it)
	for _, want := range []string{"profile: hld", "Ethernet4: ifindex 101, enabled no", "kernel changed by the takeover: Ethernet4 enabled: on -> off"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if d := Detail(a); !strings.Contains(d, "teamd hld") || !strings.Contains(d, "kernel: 1/2 ports enabled, carrier yes") {
		t.Errorf("detail %q", d)
	}
}
