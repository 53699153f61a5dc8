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
