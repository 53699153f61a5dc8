package ofdlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTakeHolderRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".x.lock")
	if who, held, err := Holder(path); err != nil || held || who != "" {
		t.Fatalf("no file: %q %v %v, want not held", who, held, err)
	}
	l, err := Take(path, "pid 1 (first)")
	if err != nil {
		t.Fatal(err)
	}
	if who, held, err := Holder(path); err != nil || !held || who != "pid 1 (first)" {
		t.Fatalf("held: %q %v %v", who, held, err)
	}
	// A second open file description conflicts, in this process as in any.
	if _, err := Take(path, "second"); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "pid 1 (first)") {
		t.Fatalf("second Take: %v, want ErrHeld naming the holder", err)
	}
	l.Release(false)
	if _, held, _ := Holder(path); held {
		t.Fatal("held after Release")
	}
	// A holder that died left a longer line: the next one's replaces it
	// whole.
	if err := os.WriteFile(path, []byte("pid 12345 (a holder that died without Release)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l2, err := Take(path, "third")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Take(path, "fourth"); !errors.Is(err, ErrHeld) || !strings.HasSuffix(err.Error(), ": third") {
		t.Fatalf("Take over a longer line: %v, want ErrHeld naming only \"third\"", err)
	}
	l2.Release(true)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Release(true) left the file: %v", err)
	}
	l2.Release(true) // twice is harmless
}

// The kernel drops the lock of a process that dies: a child (this test
// binary) takes it and is killed.
func TestLockDiesWithItsHolder(t *testing.T) {
	if os.Getenv("OFDLOCK_CHILD") != "" {
		if _, err := Take(os.Getenv("OFDLOCK_CHILD"), "child"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		select {}
	}
	path := filepath.Join(t.TempDir(), ".x.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDiesWithItsHolder$")
	cmd.Env = append(os.Environ(), "OFDLOCK_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	if who, held, _ := Holder(path); !held || who != "child" {
		t.Fatalf("child's lock: %q %v", who, held)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, held, _ := Holder(path); held {
		t.Fatal("the lock outlived its killed holder")
	}
}
