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
	"strings"
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
	if len(os.Args) > 1 && os.Args[1] == "scenarios" {
		os.Exit(scenarios(os.Args[2:]))
	}
	cache := flag.String("cache", envOr("LAB_CACHE", "/var/cache/teamdwarm-lab"), "the lab's cache (scripts/lab-deps.sh fills it)")
	kernel := flag.String("kernel", "", "the kernel's directory in the cache (default: the only one there)")
	timeout := flag.Duration("timeout", 9*time.Minute, "kill the VM past this")
	mem := flag.Int("memory", 1536, "the VM's memory, MiB")
	cpus := flag.Int("cpus", 2, "the VM's CPUs")
	record := flag.String("record", "", "record team.ko's netlink replies into this directory (teamnl/testdata)")
	only := flag.String("only", "", "comma-separated scenarios to run (default all)")
	results := flag.String("results", "", "copy the scenarios' results.json here")
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
	if bin := filepath.Dir(self); lab.UnderGuestTmpfs(bin) {
		// A checkout under /tmp: the guest's own /tmp would hide it.
		cfg.Shares = append(cfg.Shares, bin)
	}
	switch mode {
	case "run":
		out, err := os.MkdirTemp("", "teamdwarm-lab-out-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(out)
		cfg.Shares = append(cfg.Shares, out)
		guest := []string{self, "init", "--", self, "scenarios", "-bin", filepath.Dir(self), "-out", out,
			"-teamd", "debian=/usr/bin/teamd,/usr/bin/teamdctl"}
		if sonic := filepath.Join(*cache, "teamd-sonic", "bin"); exists(filepath.Join(sonic, "teamd")) {
			guest = append(guest, "-teamd", "sonic="+filepath.Join(sonic, "teamd")+","+filepath.Join(sonic, "teamdctl"))
		}
		if hld := filepath.Join(*cache, "teamd-hld", "bin"); exists(filepath.Join(hld, "teamd")) {
			guest = append(guest, "-teamd", "hld="+filepath.Join(hld, "teamd")+","+filepath.Join(hld, "teamdctl"))
		}
		if *record != "" {
			abs, _ := filepath.Abs(*record)
			if err := os.MkdirAll(abs, 0o755); err != nil {
				fail(err)
			}
			cfg.Shares = append(cfg.Shares, abs)
			guest = append(guest, "-record", abs)
		}
		if *only != "" {
			guest = append(guest, "-only", *only)
		}
		cfg.Command = guest
		defer func() {
			if *results != "" {
				if b, err := os.ReadFile(filepath.Join(out, "results.json")); err == nil {
					_ = os.WriteFile(*results, b, 0o644)
				}
			}
		}()
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
	fmt.Printf("teamdwarm-lab: the VM (qemu, software emulation, %d CPUs, %d MiB, kernel %s) booted in %.1fs; the whole run took %.1fs\n",
		*cpus, *mem, filepath.Base(*kernel), res.Booted.Seconds(), res.Took.Seconds())
	stop()
	if err != nil {
		fail(err)
	}
	if res.Exit != 0 {
		os.Exit(1)
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// scenarios is the VM's side of run: every scenario, one line each.
func scenarios(args []string) int {
	fs := flag.NewFlagSet("scenarios", flag.ExitOnError)
	var cfg lab.GuestConfig
	fs.StringVar(&cfg.Bin, "bin", "", "the project's binaries")
	fs.StringVar(&cfg.Out, "out", "", "where results.json goes")
	fs.StringVar(&cfg.Record, "record", "", "where team.ko's netlink replies are recorded")
	only := fs.String("only", "", "comma-separated scenarios")
	cfg.Teamds = map[string]lab.Teamd{}
	fs.Func("teamd", "NAME=TEAMD,TEAMDCTL, a teamd build (repeatable)", func(v string) error {
		name, paths, ok := strings.Cut(v, "=")
		prog, ctl, ok2 := strings.Cut(paths, ",")
		if !ok || !ok2 {
			return fmt.Errorf("want NAME=TEAMD,TEAMDCTL, got %q", v)
		}
		cfg.Teamds[name] = lab.Teamd{Name: name, Program: prog, Ctl: ctl}
		return nil
	})
	_ = fs.Parse(args)
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Lags = 2
	cfg.Log = os.Stdout
	fmt.Printf("teamdwarm-lab: %d scenarios, 2 LAGs x 2 members each, Linux bonding (802.3ad, fast) as the peer, traffic both ways\n", len(lab.Scenarios()))
	_, failed := lab.RunScenarios(context.Background(), cfg, lab.Scenarios(), os.Stdout)
	if failed > 0 {
		return 1
	}
	return 0
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
