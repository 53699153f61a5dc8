package statefile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/vmihailenco/msgpack/v5"
)

var clock = prototest.DefaultClock

func TestRoundTrip(t *testing.T) {
	for _, rec := range []proto.Record{
		prototest.Snapshot("PortChannel1", 7, 3, clock),
		prototest.Standby("PortChannel1", 8, 3, clock),
		prototest.Active("PortChannel1", 8, 3, clock),
		prototest.Cutover(7, []string{"PortChannel1", "PortChannel2"}, clock),
		prototest.Journal(7, "b1", clock),
		func() proto.Record {
			s := prototest.Snapshot("PortChannel1", 7, 3, clock)
			s.Teamd, s.Kernel = prototest.Teamd(), prototest.Kernel("PortChannel1", 3)
			return s
		}(),
		func() proto.Record {
			a := prototest.Active("PortChannel1", 8, 3, clock)
			a.Teamd, a.Kernel, a.KernelBefore = prototest.Teamd(), prototest.Kernel("PortChannel1", 3), &proto.KernelLAG{Err: "no team family"}
			return a
		}(),
	} {
		name := rec.Kind().String()
		if a, ok := rec.(*proto.Active); ok && a.Teamd != nil {
			name += " with the fields of version 2"
		} else if s, ok := rec.(*proto.Snapshot); ok && s.Teamd != nil {
			name += " with the fields of version 2"
		}
		t.Run(name, func(t *testing.T) {
			b, err := statefile.Encode(rec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := statefile.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			// cmp compares times with Equal: msgpack gives them back in Local.
			if diff := cmp.Diff(rec, got); diff != "" {
				t.Fatalf("round trip changed the record (-want +got):\n%s", diff)
			}
		})
	}
}

// reseal fixes the envelope's length and checksum after a test changed the
// body, so that only the change under test is wrong.
func reseal(b []byte) []byte {
	binary.BigEndian.PutUint32(b[16:], uint32(len(b)-24))
	c := crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), b[:20])
	c = crc32.Update(c, crc32.MakeTable(crc32.Castagnoli), b[24:])
	binary.BigEndian.PutUint32(b[20:], c)
	return b
}

// withBody encodes v as the body of a record of kind k and epoch.
func withBody(t *testing.T, k proto.Kind, epoch uint64, v any) []byte {
	t.Helper()
	body, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 24)
	copy(hdr, "TDWR")
	hdr[4], hdr[5] = 1, byte(k)
	binary.BigEndian.PutUint64(hdr[8:], epoch)
	return reseal(append(hdr, body...))
}

func snapshotMap(t *testing.T) map[string]any {
	t.Helper()
	return toMap(t, prototest.Snapshot("PortChannel1", 7, 2, clock))
}

// toMap is rec's msgpack body as a generic map, for a test to break.
func toMap(t *testing.T, rec proto.Record) map[string]any {
	t.Helper()
	b, err := msgpack.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDecodeRejects(t *testing.T) {
	good, err := statefile.Encode(prototest.Snapshot("PortChannel1", 7, 2, clock))
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		in   []byte
		want string // a fragment of the message
	}{
		{"empty", nil, "truncated envelope"},
		{"short header", good[:10], "truncated envelope"},
		{"magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"version", mod(func(b []byte) []byte { b[4] = 9; return b }), "format version 9"},
		{"kind", mod(func(b []byte) []byte { b[5] = 99; return b }), "unknown record kind 99"},
		{"flags", mod(func(b []byte) []byte { b[7] = 1; return b }), "flags"},
		{"truncated body", good[:len(good)-5], "truncated: envelope says"},
		{"trailing bytes", append(bytes.Clone(good), 0, 0), "trailing bytes"},
		{"crc", mod(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }), "checksum mismatch"},
		{"epoch flipped", mod(func(b []byte) []byte { b[15] ^= 1; return b }), "checksum mismatch"},
		{"epoch differs", mod(func(b []byte) []byte { b[15] = 9; return reseal(b) }), "envelope epoch 9"},
		{"unknown field", func() []byte {
			m := snapshotMap(t)
			m["favourite_colour"] = "blue"
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), `unknown field "favourite_colour"`},
		{"missing field", func() []byte {
			m := snapshotMap(t)
			delete(m, "runner")
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "missing field(s) runner"},
		{"missing nested field", func() []byte {
			m := snapshotMap(t)
			delete(m["members"].([]any)[1].(map[string]any), "selected")
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "snapshot.members[]: missing field(s) selected"},
		{"unknown nested field", func() []byte {
			m := snapshotMap(t)
			m["members"].([]any)[1].(map[string]any)["speed"] = 100000
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), `snapshot.members[]: unknown field "speed"`},
		{"missing field of an optional struct", func() []byte {
			s := prototest.Snapshot("PortChannel1", 7, 2, clock)
			s.Kernel = prototest.Kernel("PortChannel1", 2)
			m := toMap(t, s)
			delete(m["kernel"].(map[string]any)["ports"].([]any)[0].(map[string]any), "enabled")
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "snapshot.kernel.ports[]: missing field(s) enabled"},
		{"missing field in writer", func() []byte {
			m := snapshotMap(t)
			delete(m["writer"].(map[string]any), "pid")
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "snapshot.writer: missing field(s) pid"},
		{"short info", func() []byte {
			m := snapshotMap(t)
			m["members"].([]any)[0].(map[string]any)["actor"] = []byte{1, 2, 3}
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "LACP info: 3 bytes, want 18"},
		{"wrong type", func() []byte {
			m := snapshotMap(t)
			m["lag"] = 12
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "snapshot body"},
		{"invalid field", func() []byte {
			m := snapshotMap(t)
			m["lag"] = "../../etc"
			return withBody(t, proto.KindSnapshot, 7, m)
		}(), "field lag"},
		// A body that declares 2^32-1 members in a few bytes must be refused
		// before anything sized by that number is allocated.
		{"forged array length", reseal(append(bytes.Clone(good[:24]), 0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0xdd, 0xff, 0xff, 0xff, 0xff)), "array declares 4294967295"},
		{"forged string length", reseal(append(bytes.Clone(good[:24]), 0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff)), "value declares 2147483647"},
		{"forged map length", reseal(append(bytes.Clone(good[:24]), 0xdf, 0x7f, 0xff, 0xff, 0xff)), "map declares"},
		{"deep nesting", reseal(append(bytes.Clone(good[:24]), append([]byte{0x81, 0xa3, 'l', 'a', 'g'}, bytes.Repeat([]byte{0x91}, 40)...)...)), "nested deeper"},
		{"bad type byte", reseal(append(bytes.Clone(good[:24]), 0xc1)), "invalid msgpack type byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := statefile.Decode(tt.in)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, statefile.ErrCorrupt) {
				t.Fatalf("error does not match ErrCorrupt: %v", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestDecodeFieldErrorIsInvalid(t *testing.T) {
	s := prototest.Snapshot("PortChannel1", 7, 2, clock)
	b, err := msgpack.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = msgpack.Unmarshal(b, &m)
	m["config_digest"] = ""
	_, err = statefile.Decode(withBody(t, proto.KindSnapshot, 7, m))
	var fe *proto.FieldError
	if !errors.As(err, &fe) || fe.Field != "config_digest" {
		t.Fatalf("want a *proto.FieldError for config_digest, got %v", err)
	}
}

func TestReadFileRefuses(t *testing.T) {
	dir := t.TempDir()
	good, _ := statefile.Encode(prototest.Active("PortChannel1", 2, 1, clock))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real := write("PortChannel1.active", good)
	link := filepath.Join(dir, "link.active")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "PortChannel2.active")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := write("big", make([]byte, statefile.MaxFileSize+1))
	renamed := write("PortChannel9.active", good)
	subdir := filepath.Join(dir, "PortChannel3.active")
	if err := os.Mkdir(subdir, 0o700); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		path   string
		target error
	}{
		{"missing", filepath.Join(dir, "nope.active"), fs.ErrNotExist},
		{"symlink", link, statefile.ErrUnsafe},
		{"fifo", fifo, statefile.ErrUnsafe},
		{"directory", subdir, statefile.ErrUnsafe},
		{"too large", big, statefile.ErrUnsafe},
		{"under another record's name", renamed, statefile.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := statefile.ReadFile(tt.path)
			if !errors.Is(err, tt.target) {
				t.Fatalf("want %v, got %v", tt.target, err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.path)) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
	if _, err := statefile.ReadFile(real); err != nil {
		t.Fatalf("the good file: %v", err)
	}
}

// ReadBounded returns a file's bytes whatever its size up to the cap, and
// files whose size fstat does not tell (procfs says 0) as well.
func TestReadBoundedReadsWholeFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 4096, statefile.MaxFileSize} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		p := filepath.Join(dir, fmt.Sprint(n))
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := statefile.ReadBounded(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: got %d bytes, %v", n, len(got), err)
		}
	}
	want, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	got, err := statefile.ReadBounded("/proc/self/status")
	if err != nil || !bytes.Equal(got[:len("Name:")], want[:len("Name:")]) || len(got) < 100 {
		t.Errorf("/proc/self/status: got %q, %v", got, err)
	}
}

func TestOpenDir(t *testing.T) {
	base := t.TempDir()
	d, err := statefile.OpenDir(filepath.Join(base, "a", "teamdwarm"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	if want, got := fs.FileMode(0o700), st.Mode().Perm(); want != got {
		t.Fatalf("mode: want %v, got %v", want, got)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := statefile.OpenDir(open); !errors.Is(err, statefile.ErrUnsafe) {
		t.Fatalf("world-writable directory: want ErrUnsafe, got %v", err)
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		if err := os.Mkdir(other, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if _, err := statefile.OpenDir(other); !errors.Is(err, statefile.ErrUnsafe) {
			t.Fatalf("directory of another user: want ErrUnsafe, got %v", err)
		}
	}
}

func TestWriteThenList(t *testing.T) {
	d, err := statefile.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []proto.Record{
		prototest.Active("PortChannel1", 2, 2, clock),
		prototest.Standby("PortChannel1", 3, 2, clock),
		prototest.Cutover(2, []string{"PortChannel1"}, clock),
	} {
		p, err := d.Write(rec)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(p)
		if want, got := fs.FileMode(0o600), st.Mode().Perm(); want != got {
			t.Fatalf("%s mode: want %v, got %v", p, want, got)
		}
	}
	_ = os.WriteFile(filepath.Join(d.Path(), "PortChannel2.snapshot"), []byte("garbage"), 0o600)
	_ = os.WriteFile(filepath.Join(d.Path(), ".PortChannel2.snapshot.tmp-1"), []byte("half"), 0o600)
	_ = os.WriteFile(filepath.Join(d.Path(), "README"), []byte("not a record"), 0o600)
	es, err := statefile.List(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
		if (e.Err != nil) != (e.Name == "PortChannel2.snapshot") {
			t.Errorf("%s: unexpected error state %v", e.Name, e.Err)
		}
	}
	if want := []string{"PortChannel1.active", "PortChannel1.standby", "PortChannel2.snapshot", "cutover"}; !reflect.DeepEqual(want, names) {
		t.Fatalf("want %v, got %v", want, names)
	}
}

// Publish stores what Write stores, with the same mode, and leaves no temp
// file behind.
func TestPublish(t *testing.T) {
	d, err := statefile.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := prototest.Snapshot("PortChannel1", 4, 3, clock)
	p, err := d.Publish(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := statefile.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Compared as encoded: time.Time's location differs after decoding.
	wb, _ := statefile.Encode(want)
	gb, _ := statefile.Encode(got)
	if !bytes.Equal(wb, gb) {
		t.Fatalf("read back differs:\nwant %+v\ngot  %+v", want, got)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if des, _ := os.ReadDir(d.Path()); len(des) != 1 {
		t.Errorf("%d files in the directory, want the record alone", len(des))
	}
}

// TestHelperWriter is not a test: TestWriteKilledAnyInstant runs it in a
// child process that writes two alternating versions of one record until it
// is killed, every other one into a reserved file.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv("STATEFILE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	d, err := statefile.OpenDir(dir)
	if err != nil {
		os.Exit(3)
	}
	small := prototest.Snapshot("PortChannel1", 1, 1, clock)
	large := prototest.Snapshot("PortChannel1", 2, 64, clock)
	os.Stdout.WriteString("ready\n")
	for i := 0; ; i++ {
		rec := small
		if i%2 == 1 {
			rec = large
		}
		if i%4 < 2 {
			if err := d.Reserve(1); err != nil {
				os.Exit(5)
			}
		}
		if _, err := d.Write(rec); err != nil {
			os.Exit(4)
		}
	}
}

// TestWriteKilledAnyInstant kills a writer at random moments and checks that
// the final name always holds one complete version or nothing yet.
func TestWriteKilledAnyInstant(t *testing.T) {
	runs := 150
	if testing.Short() {
		runs = 30
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[uint64]int{}
	leftovers := 0
	for i := range runs {
		dir := t.TempDir()
		cmd := exec.Command(exe, "-test.run=^TestHelperWriter$")
		cmd.Env = append(os.Environ(), "STATEFILE_HELPER_DIR="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := out.Read(buf); err != nil {
			t.Fatalf("helper did not start: %v", err)
		}
		time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond) // the random instant of the kill
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		removed, err := statefile.RemoveLeftovers(dir, 0)
		if err != nil {
			t.Fatalf("run %d: removing the leftovers: %v", i, err)
		}
		leftovers += len(removed)
		if names := namesIn(t, dir, statefile.WritingDir(dir)); len(names) > 0 && !slices.Equal(names, []string{"PortChannel1.snapshot"}) {
			t.Fatalf("run %d: after RemoveLeftovers the directories hold %q, want the record alone", i, names)
		}
		rec, err := statefile.ReadFile(filepath.Join(dir, "PortChannel1.snapshot"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			counts[0]++
		case err != nil:
			t.Fatalf("run %d: a killed writer left a bad file: %v", i, err)
		default:
			counts[rec.RecordEpoch()]++
		}
	}
	t.Logf("after %d kills: %d no file yet, %d small version, %d large version; %d temp files left and removed", runs, counts[0], counts[1], counts[2], leftovers)
	if counts[1]+counts[2] == 0 {
		t.Fatal("no run got as far as a complete write: the test proves nothing")
	}
}

// namesIn lists the regular files of dirs (a missing one holds none).
func namesIn(t *testing.T, dirs ...string) []string {
	t.Helper()
	var names []string
	for _, d := range dirs {
		des, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			if de.Type().IsRegular() {
				names = append(names, de.Name())
			}
		}
	}
	return names
}

// RemoveLeftovers takes the temp files a dead writer left, once they are
// old enough, and nothing else.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	writing := statefile.WritingDir(dir)
	if err := os.Mkdir(writing, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute)
	for _, tc := range []struct {
		path   string
		what   string // file, dir, symlink
		old    bool
		remove bool
	}{
		{".PortChannel1.snapshot.tmp-0123456789ab", "file", true, true},
		{".writing/.PortChannel2.active.tmp-a1b2c3d4e5f6", "file", true, true},
		{".teamd-warm.journal.tmp-00000000000f", "file", true, true},
		{".PortChannel1.active.tmp-0123456789ab", "file", false, false}, // a write under way
		{".writing/.PortChannel3.active.tmp-a1b2c3d4e5f6", "file", false, false},
		{"PortChannel1.snapshot", "file", true, false},                 // a record
		{".PortChannel1.1.live", "file", true, false},                  // a liveness lock
		{".teamd-warm.lock", "file", true, false},                      // the supervisor's lock
		{".PortChannel4.active.tmp-zzzzzzzzzzzz", "file", true, false}, // not hex
		{".PortChannel4.active.tmp-0123456789", "file", true, false},   // too short
		{".tmp-0123456789ab", "file", true, false},                     // no file name
		{".PortChannel5.active.tmp-0123456789ab", "symlink", true, false},
		{".PortChannel6.active.tmp-0123456789ab", "dir", true, false},
	} {
		p := filepath.Join(dir, tc.path)
		var err error
		switch tc.what {
		case "file":
			err = os.WriteFile(p, []byte("x"), 0o600)
		case "dir":
			err = os.Mkdir(p, 0o700)
		case "symlink":
			err = os.Symlink(filepath.Join(dir, "PortChannel1.snapshot"), p)
		}
		if err == nil && tc.old {
			err = os.Chtimes(p, old, old)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	removed, err := statefile.RemoveLeftovers(dir, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, ".PortChannel1.snapshot.tmp-0123456789ab"),
		filepath.Join(dir, ".teamd-warm.journal.tmp-00000000000f"),
		filepath.Join(writing, ".PortChannel2.active.tmp-a1b2c3d4e5f6"),
	}
	slices.Sort(removed)
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %q, want %q", removed, want)
	}
	for _, p := range want {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	if got := len(namesIn(t, dir, writing)); got != 8 {
		t.Errorf("%d regular files left, want the 8 it must keep", got)
	}

	// Without a writing directory, and with nothing to remove.
	if removed, err := statefile.RemoveLeftovers(t.TempDir(), time.Minute); err != nil || len(removed) != 0 {
		t.Errorf("an empty directory: removed %q, %v", removed, err)
	}
	if _, err := statefile.RemoveLeftovers(filepath.Join(dir, "missing"), time.Minute); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing record directory: %v, want an error matching fs.ErrNotExist", err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := statefile.RemoveLeftovers(open, time.Minute); !errors.Is(err, statefile.ErrUnsafe) {
		t.Errorf("a world-writable directory: %v, want an error matching ErrUnsafe", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, rec := range []proto.Record{
		prototest.Snapshot("PortChannel1", 7, 2, clock),
		prototest.Standby("PortChannel1", 8, 2, clock),
		prototest.Active("PortChannel1", 8, 2, clock),
		prototest.Cutover(7, []string{"PortChannel1"}, clock),
		prototest.Journal(7, "a3", clock),
	} {
		b, _ := statefile.Encode(rec)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := statefile.Decode(b)
		if err != nil {
			if !errors.Is(err, statefile.ErrCorrupt) {
				t.Fatalf("error does not match ErrCorrupt: %v", err)
			}
			return
		}
		if err := rec.Validate(); err != nil {
			t.Fatalf("decoded an invalid record: %v", err)
		}
		// The checksum covers the body, so the fuzzer mostly tests the
		// envelope; FuzzDecodeBody below goes past it.
	})
}

// FuzzDecodeBody fuzzes the msgpack body behind a correct envelope, so that
// the strict body walker and the msgpack decoder see the mutations.
func FuzzDecodeBody(f *testing.F) {
	for _, rec := range []proto.Record{
		prototest.Snapshot("PortChannel1", 7, 2, clock),
		prototest.Cutover(7, []string{"PortChannel1"}, clock),
		prototest.Journal(7, "a3", clock),
	} {
		b, _ := statefile.Encode(rec)
		f.Add(b[5], b[24:])
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		hdr := make([]byte, 24, 24+len(body))
		copy(hdr, "TDWR")
		hdr[4], hdr[5] = 1, kind
		b := append(hdr, body...)
		// Take the epoch from wherever the body has it: try both 7 and 8.
		for _, epoch := range []uint64{7, 8} {
			binary.BigEndian.PutUint64(b[8:], epoch)
			rec, err := statefile.Decode(reseal(b))
			if err == nil {
				if err := rec.Validate(); err != nil {
					t.Fatalf("decoded an invalid record: %v", err)
				}
			} else if !errors.Is(err, statefile.ErrCorrupt) {
				t.Fatalf("error does not match ErrCorrupt: %v", err)
			}
		}
	})
}

// A record of the first version, without the fields added since (tagged
// omitempty), still decodes: a new reader takes an old writer's records.
func TestDecodeEarlierVersion(t *testing.T) {
	m := toMap(t, prototest.Active("PortChannel1", 8, 3, clock))
	for _, f := range []string{"teamd", "kernel", "kernel_before"} {
		if _, ok := m[f]; ok {
			t.Fatalf("field %s encoded though empty", f)
		}
	}
	rec, err := statefile.Decode(withBody(t, proto.KindActive, 8, m))
	if err != nil {
		t.Fatal(err)
	}
	if a := rec.(*proto.Active); a.Teamd != nil || a.Kernel != nil {
		t.Fatalf("absent fields decoded as %+v %+v", a.Teamd, a.Kernel)
	}
}

// RemoveVersion removes a record only in the version its caller knows: a
// writer's own, not one written after it.
func TestRemoveVersion(t *testing.T) {
	standby := func(epoch uint64) proto.Record { return prototest.Standby("PortChannel1", epoch, 2, clock) }
	tests := []struct {
		name        string
		after       func(t *testing.T, d *statefile.Dir) // between the write and the removal
		wantRemoved bool
		wantEpoch   uint64 // of the record left; 0: none
	}{
		{name: "the version written", wantRemoved: true},
		{
			name: "rewritten since",
			after: func(t *testing.T, d *statefile.Dir) {
				if _, err := d.Publish(standby(3)); err != nil {
					t.Fatal(err)
				}
			},
			wantEpoch: 3,
		},
		{
			name: "removed since",
			after: func(t *testing.T, d *statefile.Dir) {
				if err := d.Remove("PortChannel1", proto.KindStandby); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := statefile.OpenDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			p, err := d.Publish(standby(2))
			if err != nil {
				t.Fatal(err)
			}
			v, err := statefile.VersionOf(p)
			if err != nil {
				t.Fatal(err)
			}
			if tc.after != nil {
				tc.after(t, d)
			}
			removed, err := d.RemoveVersion("PortChannel1", proto.KindStandby, v)
			if err != nil || removed != tc.wantRemoved {
				t.Fatalf("RemoveVersion = %v, %v; want %v, nil", removed, err, tc.wantRemoved)
			}
			rec, err := d.Read("PortChannel1", proto.KindStandby)
			switch {
			case tc.wantEpoch == 0 && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("after it: %v, %v; want no record", rec, err)
			case tc.wantEpoch != 0 && (err != nil || rec.RecordEpoch() != tc.wantEpoch):
				t.Errorf("after it: %v, %v; want the record of epoch %d", rec, err, tc.wantEpoch)
			}
		})
	}
}
