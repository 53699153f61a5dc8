package teamdshim

import (
	"errors"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// awaitExit returns once the process has exited, and only then: the
// process it returns for is waitable at once, and the pidfd it was given
// is still the caller's.
func TestAwaitExitReturnsOnceTheProcessExited(t *testing.T) {
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		t.Skipf("no pidfds here: %v", err)
	}
	defer unix.Close(fd)
	done := make(chan error, 1)
	go func() { done <- awaitExit(fd) }()
	select {
	case err := <-done:
		t.Fatalf("awaitExit returned (%v) while cat still reads its input", err)
	default:
	}
	in.Close() // cat exits
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	if err != nil || got != pid {
		t.Fatalf("wait4 after awaitExit: pid %d, %v; want %d exited", got, err, pid)
	}
	reaped = true
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("the pidfd after its process was reaped: signal 0 gives %v, want ESRCH", err)
	}
}
