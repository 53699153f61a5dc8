package statefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

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
			d := reservedDir(t, tc.reserve)
			if got := names(t, d.Path()); len(got) != 0 {
				t.Fatalf("reserving named %v, want nothing", got)
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
			var records []string
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
				records = append(records, proto.RecordFileName(rec))
			}
			if filled != tc.reserved {
				t.Errorf("%d writes filled a reserved file, want %d", filled, tc.reserved)
			}
			if err := d.Close(); err != nil || len(d.spares) != 0 {
				t.Fatalf("Close: %v, %d held", err, len(d.spares))
			}
			slices.Sort(records)
			if got := names(t, d.Path()); !slices.Equal(got, records) {
				t.Fatalf("directory holds %v, want the records %v alone", got, records)
			}
			if got := names(t, WritingDir(d.Path())); len(got) != 0 {
				t.Fatalf("the writing directory holds %v, want nothing", got)
			}
		})
	}
}

// reservedDir is a new record directory with n files reserved, released
// when the test ends.
func reservedDir(t *testing.T, n int) *Dir {
	t.Helper()
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Reserve(n); err != nil {
		t.Fatal(err)
	}
	return d
}

// names lists the names in dir but the writing directory's.
func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if filepath.Join(dir, de.Name()) != WritingDir(dir) {
			out = append(out, de.Name())
		}
	}
	return out
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
	if got := names(t, d.Path()); len(got) != 1 {
		t.Fatalf("the directory holds %v, want the record alone", got)
	}
	if _, err := d.Publish(rec); err != nil {
		t.Fatalf("a write after reserving stopped: %v", err)
	}
}

// A write into a reserved file is one event for the record directory's
// watchers, the record's arrival (IN_MOVED_TO): its data, its temp name and
// its move from there are events of the writing directory. A write without
// a reserved file is three more.
func TestReservedWriteIsOneEvent(t *testing.T) {
	rec := prototest.Active("PortChannel1", 2, 2, prototest.DefaultClock)
	for _, tc := range []struct {
		reserve int
		want    []string
	}{
		{1, []string{"IN_MOVED_TO PortChannel1.active"}},
		{0, []string{"IN_CREATE tmp", "IN_MODIFY tmp", "IN_MOVED_FROM tmp", "IN_MOVED_TO PortChannel1.active"}},
	} {
		d := reservedDir(t, tc.reserve)
		fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		// fsnotify's mask, as init's hub watches the directory.
		const mask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
		if _, err := unix.InotifyAddWatch(fd, d.Path(), mask); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write(rec); err != nil {
			t.Fatal(err)
		}
		// The kernel queued the events in the write's own system calls.
		var got []string
		buf := make([]byte, 4096)
		n, err := unix.Read(fd, buf)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if strings.HasPrefix(name, tempPrefix) {
				name = "tmp"
			}
			for _, m := range []struct {
				bit  uint32
				name string
			}{{unix.IN_CREATE, "IN_CREATE"}, {unix.IN_MODIFY, "IN_MODIFY"}, {unix.IN_ATTRIB, "IN_ATTRIB"}, {unix.IN_DELETE, "IN_DELETE"}, {unix.IN_MOVED_FROM, "IN_MOVED_FROM"}, {unix.IN_MOVED_TO, "IN_MOVED_TO"}} {
				if ev.Mask&m.bit != 0 {
					got = append(got, m.name+" "+name)
				}
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("with %d reserved: the directory's watchers got %q, want %q", tc.reserve, got, tc.want)
		}
	}
}
