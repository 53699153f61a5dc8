// Package testbin builds the project's programs for tests that run them as
// real processes (the shim, the teamd stand-in): static, like the images
// they go into.
package testbin

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Module is the project's module path.
const Module = "github.com/teamdwarm/teamdwarm"

// Build builds each main package, given relative to the module root (e.g.
// "cmd/teamd-shim"), into dir, and returns the binaries' paths by package.
func Build(dir string, pkgs ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, pkg := range pkgs {
		bin := filepath.Join(dir, path.Base(pkg))
		cmd := exec.Command("go", "build", "-o", bin, Module+"/"+pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", pkg, err, b)
		}
		out[pkg] = bin
	}
	return out, nil
}

// Buffer collects a process's output while a test reads it.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer  // guarded by mu
	written chan struct{} // a write happened; made on first use, guarded by mu
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		select {
		case s.written <- struct{}{}:
		default:
		}
	}
	return s.b.Write(p)
}

// WaitFor waits until the output holds substr, up to timeout, and says
// whether it does.
func (s *Buffer) WaitFor(substr string, timeout time.Duration) bool {
	expire := time.After(timeout)
	for {
		s.mu.Lock()
		if s.written == nil {
			s.written = make(chan struct{}, 1)
		}
		found, written := strings.Contains(s.b.String(), substr), s.written
		s.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-written:
		case <-expire:
			return false
		}
	}
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
