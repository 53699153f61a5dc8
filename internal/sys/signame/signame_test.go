package signame

import (
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{
		{"SIGUSR2", syscall.SIGUSR2, true},
		{"usr1", syscall.SIGUSR1, true},
		{"15", syscall.SIGTERM, true},
		{"SIGRTMIN", 34, true},
		{"SIGRTMIN+2", 36, true},
		{"RTMIN", 34, true},
		{"SIGRTMIN+40", 0, false},
		{"SIGFOO", 0, false},
		{"0", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			if back, err := Parse(String(got)); err != nil || back != got {
				t.Errorf("Parse(String(%v)) = %v, %v", got, back, err)
			}
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		ws   syscall.WaitStatus // as wait4 fills it: status<<8, or the signal
		want int
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3 << 8, 3},
		{"SIGKILL", syscall.WaitStatus(syscall.SIGKILL), 137},
		{"SIGTERM", syscall.WaitStatus(syscall.SIGTERM), 143},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.ws); got != tt.want {
			t.Errorf("%s: ExitCode = %d, want %d", tt.name, got, tt.want)
		}
	}
}
