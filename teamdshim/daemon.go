package teamdshim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// envDaemonChild marks the daemonized copy of a shim; readyFD is its end
// of the readiness pipe (the first ExtraFiles entry).
const (
	envDaemonChild = "TEAMDWARM_SHIM_DAEMON"
	readyFD        = 3
)

// Daemonize does for a shim what teamd -d does for teamd, since teammgrd
// calls teamd with -d and expects it to return once teamd is up: it starts
// a copy of this program (same arguments) in a new session with its output
// in logPath, and returns when the copy reports that teamd answers on its
// control socket, or with the copy's error if it failed first.
func Daemonize(args []string, logPath string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = os.Args[0] // argv[0] picks the mode (teamd or teamd-shim)
	cmd.Env = append(os.Environ(), envDaemonChild+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	line, _ := bufio.NewReader(pr).ReadString('\n')
	if line = strings.TrimSpace(line); line != "ok" {
		_ = cmd.Wait()
		if line == "" {
			line = fmt.Sprintf("the daemon exited (%s) before teamd was up; see %s", cmd.ProcessState, logPath)
		}
		return errors.New(line)
	}
	return cmd.Process.Release()
}

// DaemonChild reports whether this process is the copy Daemonize started;
// if so, report tells the waiting parent the outcome (nil: teamd is up).
// Only the first report counts.
func DaemonChild() (report func(error), ok bool) {
	if os.Getenv(envDaemonChild) == "" {
		return nil, false
	}
	os.Unsetenv(envDaemonChild) // not for teamd
	f := os.NewFile(readyFD, "ready")
	return func(err error) {
		if f == nil {
			return
		}
		if err == nil {
			fmt.Fprintln(f, "ok")
		} else {
			fmt.Fprintln(f, strings.ReplaceAll(err.Error(), "\n", " "))
		}
		f.Close()
		f = nil
	}, true
}
