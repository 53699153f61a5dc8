// Command teammgrd is the test stand-in for the PID 1 of the teamd
// container every SONiC switch runs today, before its first teamdwarm
// upgrade: no teamd-shim anywhere. As SONiC's teammgrd does, it starts one
// teamd per LAG config, daemonized, with teammgrd's command line
//
//	/usr/bin/teamd -r -t <LAG> -c '<json>' -L /var/warmboot/teamd/ -g -d
//
// so that each teamd writes its pid file and control socket in the
// container's /var/run/teamd. As supervisord does, it reaps what
// reparents to it and, on SIGTERM, stops the teamds as teammgrd's cleanup
// does (SIGTERM by pid file) and exits.
//
// Installed (as a link) under the name tlm_teamd, it is a decoy for
// SONiC's teamd telemetry daemon, which "pkill -USR1 teamd" also hits: it
// waits, and if SIGUSR1 reaches it, it writes a mark file
// (/var/warmboot/tlm_teamd.SIGUSR1) and exits, as the real one would die.
// A warm upgrade that signals by PID leaves it alone.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mark is the file the tlm_teamd decoy writes when SIGUSR1 reaches it.
const Mark = "/var/warmboot/tlm_teamd.SIGUSR1"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if filepath.Base(os.Args[0]) == "tlm_teamd" {
		tlmTeamd(log)
		return
	}
	if err := run(log); err != nil {
		log.Error("teammgrd", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	// Signals first: a SIGTERM while the teamds start is not lost.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	configs, err := filepath.Glob("/etc/teamd/*.conf")
	if err != nil {
		return err
	}
	slices.Sort(configs)
	var lags []string
	for _, c := range configs {
		lag, err := startTeamd(c)
		if err != nil {
			return err
		}
		lags = append(lags, lag)
		log.Info("teamd started", "lag", lag)
	}
	tlm := exec.Command("/usr/bin/tlm_teamd")
	tlm.Stdout, tlm.Stderr = os.Stdout, os.Stderr
	if err := tlm.Start(); err != nil {
		return fmt.Errorf("tlm_teamd: %w", err)
	}
	for s := range sigs {
		if s == syscall.SIGCHLD {
			reap(log)
			continue
		}
		log.Info("stopping the teamds", "signal", s)
		for _, lag := range lags {
			stopTeamd(log, lag)
		}
		return nil
	}
	return nil
}

// startTeamd runs teamd for one config the way teammgrd does and waits for
// the daemonizing parent's exit (teamd's readiness).
func startTeamd(config string) (string, error) {
	b, err := os.ReadFile(config)
	if err != nil {
		return "", err
	}
	var c struct {
		Device string `json:"device"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Device == "" {
		return "", fmt.Errorf("%s: no device (%v)", config, err)
	}
	cmd := exec.Command("/usr/bin/teamd", "-r", "-t", c.Device, "-c", string(b), "-L", "/var/warmboot/teamd/", "-g", "-d")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("teamd for %s: %w", c.Device, err)
	}
	return c.Device, nil
}

// stopTeamd is teammgrd's cleanup for one LAG: SIGTERM to the pid in its
// pid file, if it is there (a teamd that stopped warm removed it).
func stopTeamd(log *slog.Logger, lag string) {
	b, err := os.ReadFile(filepath.Join("/var/run/teamd", lag+".pid"))
	if err != nil {
		log.Info("no pid file: teamd is gone", "lag", lag)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 50 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		reap(log)
		time.Sleep(20 * time.Millisecond)
	}
}

func reap(log *slog.Logger) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		log.Info("reaped", "pid", pid, "status", ws)
	}
}

// tlmTeamd is the decoy: it waits for SIGTERM; SIGUSR1 leaves the mark.
func tlmTeamd(log *slog.Logger) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	if s := <-sigs; s == syscall.SIGUSR1 {
		log.Error("tlm_teamd: SIGUSR1 reached it (a signal by name, not by PID)")
		_ = os.WriteFile(Mark, []byte("SIGUSR1\n"), 0o644)
		os.Exit(1)
	}
}
