package statefile_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
	"golang.org/x/sys/unix"
)

// The benchmarks use a 64-member snapshot: the largest LAG SONiC allows.
func bigSnapshot() *proto.Snapshot { return prototest.Snapshot("PortChannel1", 7, 64, clock) }

func BenchmarkEncode64(b *testing.B) {
	s := bigSnapshot()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := statefile.Encode(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode64(b *testing.B) {
	buf, err := statefile.Encode(bigSnapshot())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := statefile.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDecode64(b *testing.B) {
	s := bigSnapshot()
	for b.Loop() {
		buf, err := statefile.Encode(s)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := statefile.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDurableWrite64(b *testing.B) {
	d, err := statefile.OpenDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s := bigSnapshot()
	for b.Loop() {
		if _, err := d.Write(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublish64 is the handoff's snapshot write, into a file of its
// own and into one reserved ahead (Dir.Reserve, outside the timing): the
// difference is the inode's allocation. Each write replaces the last, so
// the directory has freed inodes all the time, as in a switch's handoffs.
func BenchmarkPublish64(b *testing.B) {
	for _, reserved := range []bool{false, true} {
		b.Run(map[bool]string{false: "new-file", true: "reserved"}[reserved], func(b *testing.B) {
			d, err := statefile.OpenDir(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			s := bigSnapshot()
			for b.Loop() {
				if reserved {
					b.StopTimer()
					if err := d.Reserve(1); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, err := d.Publish(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// TestHelperWatcher is not a test: BenchmarkWriteToDelivery64 runs it in a
// child process that prints the CLOCK_MONOTONIC time of each delivery.
func TestHelperWatcher(t *testing.T) {
	dir := os.Getenv("STATEFILE_WATCH_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	ch, err := statefile.Watch(context.Background(), dir)
	if err != nil {
		os.Exit(3)
	}
	fmt.Println("ready")
	for ev := range ch {
		if ev.Record != nil {
			fmt.Printf("%d %d\n", ev.Record.RecordEpoch(), monoNow())
		}
	}
}

// BenchmarkWriteToDelivery64 measures from the start of a durable write of a
// 64-member snapshot to its delivery by Watch in another process. The clock
// is CLOCK_MONOTONIC, shared by both processes.
func BenchmarkWriteToDelivery64(b *testing.B) {
	d, err := statefile.OpenDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^TestHelperWatcher$")
	cmd.Env = append(os.Environ(), "STATEFILE_WATCH_DIR="+d.Path())
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("watcher did not start: %q", lines.Text())
	}
	s := bigSnapshot()
	var lat []time.Duration
	epoch := uint64(1)
	for b.Loop() {
		epoch++
		s.Epoch = epoch
		start := monoNow()
		if _, err := d.Write(s); err != nil {
			b.Fatal(err)
		}
		for {
			if !lines.Scan() {
				b.Fatal("watcher exited")
			}
			f := strings.Fields(lines.Text())
			if len(f) == 2 && f[0] == strconv.FormatUint(epoch, 10) {
				at, _ := strconv.ParseInt(f[1], 10, 64)
				lat = append(lat, time.Duration(at-start))
				break
			}
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
