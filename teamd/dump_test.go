package teamd

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLAGDump(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want LAGDump
		err  string
	}{
		// The example of reference §6.
		{"one port", "1\n1\nEthernet40\n1\n", LAGDump{Carrier: true, Ports: []DumpPort{{"Ethernet40", true}}}, ""},
		{"no ports", "0\n0\n", LAGDump{}, ""},
		{"two ports", "1\n2\nEthernet0\n1\nEthernet4\n0\n", LAGDump{Carrier: true, Ports: []DumpPort{{"Ethernet0", true}, {"Ethernet4", false}}}, ""},
		{"empty", "", LAGDump{}, "newline"},
		{"no newline", "1\n1\nEthernet40\n1", LAGDump{}, "newline"},
		{"carrier", "up\n0\n", LAGDump{}, "line 1 (carrier)"},
		{"count", "1\n-1\n", LAGDump{}, "line 2 (port count)"},
		{"huge count", "1\n99999999999\n", LAGDump{}, "line 2 (port count)"},
		{"count mismatch", "1\n2\nEthernet0\n1\n", LAGDump{}, "2 ports declared"},
		{"enabled", "1\n1\nEthernet0\nyes\n", LAGDump{}, "line 4 (enabled)"},
		{"port name", "1\n1\n\n1\n", LAGDump{}, "line 3 (port name)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLAGDump([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("want error containing %q, got %v", tt.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			out, _ := got.AppendBinary(nil)
			if string(out) != tt.in {
				t.Fatalf("re-encoded %q, want %q", out, tt.in)
			}
		})
	}
}

func FuzzParseLAGDump(f *testing.F) {
	f.Add([]byte("1\n1\nEthernet40\n1\n"))
	f.Add([]byte("0\n0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseLAGDump(b)
		if err != nil {
			return
		}
		out, _ := d.AppendBinary(nil)
		if d2, err := ParseLAGDump(out); err != nil || !cmp.Equal(d, d2) {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
	})
}
