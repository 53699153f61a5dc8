package statefile

import (
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"golang.org/x/sys/unix"
)

// Writes after Reserve fill the reserved files: the records they leave are
// those files (same inodes), complete, and nothing else is left behind; a
// reserved file no write took leaves nothing either.
func TestReserve(t *testing.T) {
	clock := prototest.DefaultClock
	recs := []proto.Record{
		prototest.Active("PortChannel1", 2, 2, clock),
		prototest.Snapshot("PortChannel2", 1, 2, clock),
		prototest.Standby("PortChannel3", 2, 2, clock),
	}
	for _, tc := range []struct {
		name     string
		reserve  int // files reserved before the writes
		reserved int // how many of the writes fill one
	}{
		{"none", 0, 0},
		{"one for three writes", 1, 1},
		{"as many as the writes", 3, 3},
		{"more than the writes", 5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := OpenDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.Reserve(tc.reserve); err != nil {
				t.Fatal(err)
			}
			if des, _ := os.ReadDir(d.Path()); len(des) != 0 {
				t.Fatalf("reserving named %d files, want none", len(des))
			}
			if err := d.Reserve(tc.reserve - 1); err != nil || len(d.spares) != tc.reserve {
				t.Fatalf("Reserve of fewer than held: %v, %d held, want %d", err, len(d.spares), tc.reserve)
			}
			inodes := map[uint64]bool{}
			for _, fd := range d.spares {
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Fatal(err)
				}
				inodes[st.Ino] = true
			}
			var names []string
			filled := 0
			for i, rec := range recs {
				write := d.Write
				if i%2 == 1 {
					write = d.Publish
				}
				p, err := write(rec)
				if err != nil {
					t.Fatal(err)
				}
				back, err := ReadFile(p)
				if err != nil || back.RecordEpoch() != rec.RecordEpoch() || back.Kind() != rec.Kind() {
					t.Fatalf("%s read back: %v, %v", p, back, err)
				}
				var st unix.Stat_t
				if err := unix.Stat(p, &st); err != nil {
					t.Fatal(err)
				}
				if st.Mode&0o777 != 0o600 {
					t.Errorf("%s: mode %#o, want 0600", p, st.Mode&0o777)
				}
				if inodes[st.Ino] {
					filled++
				}
				names = append(names, proto.RecordFileName(rec))
			}
			if filled != tc.reserved {
				t.Errorf("%d writes filled a reserved file, want %d", filled, tc.reserved)
			}
			if err := d.Close(); err != nil || len(d.spares) != 0 {
				t.Fatalf("Close: %v, %d held", err, len(d.spares))
			}
			des, _ := os.ReadDir(d.Path())
			var got []string
			for _, de := range des {
				got = append(got, de.Name())
			}
			slices.Sort(names)
			if !slices.Equal(got, names) {
				t.Fatalf("directory holds %v, want the records %v alone", got, names)
			}
		})
	}
}

// A reserved file that cannot be named (here one opened O_EXCL, which
// linkat refuses) does not lose the write: the record lands through a file
// of its own, and Reserve says why it stops reserving.
func TestReserveThatCannotBeNamed(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fd, err := unix.Open(d.Path(), unix.O_TMPFILE|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Skipf("no O_TMPFILE here: %v", err)
	}
	d.spares = append(d.spares, fd)
	rec := prototest.Active("PortChannel1", 2, 2, prototest.DefaultClock)
	p, err := d.Write(rec)
	if err != nil {
		t.Fatalf("the write was lost: %v", err)
	}
	if _, err := ReadFile(p); err != nil {
		t.Fatal(err)
	}
	err = d.Reserve(1)
	if le := (*linkError)(nil); !errors.As(err, &le) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Reserve after a file could not be named: %v, want the link error", err)
	}
	if des, _ := os.ReadDir(d.Path()); len(des) != 1 {
		t.Fatalf("%d files in the directory, want the record alone", len(des))
	}
	if _, err := d.Publish(rec); err != nil {
		t.Fatalf("a write after reserving stopped: %v", err)
	}
}
