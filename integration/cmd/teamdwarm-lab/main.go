// Command teamdwarm-lab runs the real-kernel lab (package
// integration/lab): it boots the lab VM and runs the scenarios in it, one
// line each, then "N passed, M failed"; it exits 1 if any failed.
//
//	teamdwarm-lab [flags] [run]          boot the VM, run every scenario
//	teamdwarm-lab [flags] exec -- CMD    boot the VM, run CMD in it (to look around)
//
// Inside the VM it is also the init ("init -- CMD") and the scenario
// runner ("scenarios"); those two modes are the VM's, not an operator's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/lab"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		lab.GuestInit(args)
	}
	cache := flag.String("cache", envOr("LAB_CACHE", "/var/cache/teamdwarm-lab"), "the lab's cache (scripts/lab-deps.sh fills it)")
	kernel := flag.String("kernel", "", "the kernel's directory in the cache (default: the only one there)")
	timeout := flag.Duration("timeout", 9*time.Minute, "kill the VM past this")
	mem := flag.Int("memory", 1536, "the VM's memory, MiB")
	cpus := flag.Int("cpus", 2, "the VM's CPUs")
	flag.Parse()
	args := flag.Args()
	mode := "run"
	if len(args) > 0 {
		mode, args = args[0], args[1:]
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	if *kernel == "" {
		ks, _ := filepath.Glob(filepath.Join(*cache, "kernel", "*", "vmlinuz"))
		if len(ks) != 1 {
			fail(fmt.Errorf("want one kernel in %s/kernel, found %d: run scripts/lab-deps.sh (make lab does)", *cache, len(ks)))
		}
		*kernel = filepath.Dir(ks[0])
	}
	cfg := lab.VMConfig{KernelDir: *kernel, Busybox: "/bin/busybox", Memory: *mem, CPUs: *cpus, Timeout: *timeout,
		Console: func(line string) { fmt.Println(line) }}
	switch mode {
	case "exec":
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) == 0 {
			fail(fmt.Errorf("exec: no command"))
		}
		cfg.Command = append([]string{self, "init", "--"}, args...)
	default:
		fail(fmt.Errorf("unknown mode %q (run, exec)", mode))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := lab.RunVM(ctx, cfg)
	fmt.Fprintf(os.Stderr, "teamdwarm-lab: VM booted in %v, ran %v\n", res.Booted.Round(10*time.Millisecond), res.Took.Round(10*time.Millisecond))
	if err != nil {
		fail(err)
	}
	os.Exit(res.Exit)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "teamdwarm-lab: %v\n", err)
	os.Exit(1)
}
