// Command pause holds a network namespace open: the test bed's DUT
// namespace is a container running it, so that teamd containers can join
// it (--network container:ID) as SONiC's join the host's. It waits for
// SIGTERM or SIGINT and exits 0, and as PID 1 it reaps what reparents to it.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
