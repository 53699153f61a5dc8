package lab

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"golang.org/x/sys/unix"
)

// GuestEnv is the environment the VM's command gets: the host's tools on
// the PATH, teamd's logs on its stderr.
var GuestEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "TERM=dumb", "LANG=C.UTF-8",
	"TEAM_LOG_OUTPUT=stderr",
}

// GuestInit is the VM's PID 1 once the host's root is mounted: it runs
// argv as its only child, on the console, reaps every process that is
// reparented to it, prints ExitLine with the child's exit code, and powers
// the VM off. It never returns.
func GuestInit(argv []string) {
	code := guestRun(argv)
	fmt.Printf("%s%d\n", ExitLine, code)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // PID 1 must not exit: the kernel would panic
}

func guestRun(argv []string) int {
	if len(argv) == 0 {
		fmt.Println("teamdwarm-lab: init: no command")
		return 125
	}
	_ = unix.Sethostname([]byte("lab"))
	if err := exec0("ip", "link", "set", "lo", "up"); err != nil {
		fmt.Printf("teamdwarm-lab: init: %v\n", err)
	}
	// The only wait4 owner in the VM: subscribed before the child starts.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: GuestEnv, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		fmt.Printf("teamdwarm-lab: init: %v\n", err)
		return 126
	}
	child := p.Pid
	_ = p.Release()
	for range sigs {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			if pid == child {
				return signame.ExitCode(syscall.WaitStatus(ws))
			}
		}
	}
	return 125
}

// exec0 runs a command on the console, before the child exists (so that
// no wait4 loop races it).
func exec0(name string, args ...string) error {
	path := "/usr/sbin/" + name
	if _, err := os.Stat(path); err != nil {
		path = "/usr/bin/" + name
	}
	p, err := os.StartProcess(path, append([]string{name}, args...), &os.ProcAttr{Env: GuestEnv, Files: []*os.File{nil, os.Stdout, os.Stderr}})
	if err != nil {
		return err
	}
	st, err := p.Wait()
	if err == nil && !st.Success() {
		err = fmt.Errorf("%s: %s", name, st)
	}
	return err
}
