package procstat_test

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/teamdwarm/teamdwarm/internal/sys/procstat"
)

func TestFields(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want []string // nil: an error
	}{
		{"plain", "42 (teamd) S 1 42 42 0", []string{"S", "1", "42", "42", "0"}},
		{"name with spaces and parentheses", "7 (a) b (c)) Z 3 4\n", []string{"Z", "3", "4"}},
		{"no name", "42 teamd S 1", nil},
		{"nothing after the name", "42 (teamd)", nil},
		{"no single-letter state", "42 (teamd) Sleeping 1", nil},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := procstat.Fields([]byte(tt.stat))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Fields(%q) = %q, want an error", tt.stat, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Fields(%q) = %q, %v; want %q", tt.stat, got, err, tt.want)
			}
		})
	}
}

// Read of this process: its state is R (it runs) and its parent is
// os.Getppid.
func TestReadSelf(t *testing.T) {
	// The thread that reads its own entry is running; the process's entry
	// is its main thread's, which may sleep while the test runs on another.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := procstat.Read(syscall.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "R" {
		t.Errorf("state %q, want R", f[0])
	}
	if ppid, err := strconv.Atoi(f[1]); err != nil || ppid != os.Getppid() {
		t.Errorf("parent %q, want %d", f[1], os.Getppid())
	}
	if _, err := procstat.Read(-1); err == nil {
		t.Error("Read(-1): want an error")
	}
}

func FuzzFields(f *testing.F) {
	f.Add([]byte("42 (teamd) S 1 42 42 0 -1 4194560 100 0 0 0 3 5 0 0 20 0 1 0 12345"))
	f.Add([]byte("7 (a) b (c)) Z 3 4"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, err := procstat.Fields(b)
		if err != nil {
			return
		}
		if len(fields) == 0 || len(fields[0]) != 1 {
			t.Fatalf("Fields(%q) = %q: no state", b, fields)
		}
	})
}
