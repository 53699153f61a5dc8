// Command teamdwarm-demo is the README's main job: on this machine's
// dockerd it builds teamd images v1 and v2 from the static binaries in
// bin/, a switch of N fast-mode LAGs facing Open vSwitch as the LACP peer,
// starts the v1 teamd container, runs "teamd-warm upgrade" to v2, and
// prints the supervisor's report and the peer's verdict. With -from sonic
// the old container is SONiC-shaped instead (teammgrd's teamds, no shim:
// what a switch runs before teamdwarm), and the upgrade is the first one.
// It removes everything it made, also when interrupted, and exits 0 only
// if the upgrade succeeded and the peer noticed nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

func main() {
	lags := flag.Int("lags", 8, "LAGs")
	members := flag.Int("members", 2, "members per LAG")
	bin := flag.String("bin", "bin", "directory with teamd-shim, teamd-warm, teamdsim, pause and teammgrd")
	from := flag.String("from", "teamdwarm", "the old container: teamdwarm (an image of teamdwarm's, v1) or sonic (SONiC's teamd container, no shim: the first upgrade)")
	flag.Parse()
	if *from != "teamdwarm" && *from != "sonic" {
		fmt.Fprintf(os.Stderr, "teamdwarm-demo: -from %q: want teamdwarm or sonic\n", *from)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := demo(ctx, *lags, *members, *bin, *from == "sonic")
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "teamdwarm-demo: %v\n", err)
		os.Exit(1)
	}
}

func step(n int, format string, args ...any) {
	fmt.Printf("\n[%d/5] %s\n", n, fmt.Sprintf(format, args...))
}

func demo(ctx context.Context, lags, members int, bin string, fromSONiC bool) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: network namespaces and the Docker Engine")
	}
	abs := func(name string) string { p, _ := filepath.Abs(filepath.Join(bin, name)); return p }
	bins := dut.Binaries{Shim: abs("teamd-shim"), Teamd: abs("teamdsim"), Pause: abs("pause"), Teammgrd: abs("teammgrd")}
	scratch, err := os.MkdirTemp("", "teamdwarm-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	_ = dut.Sweep(ctx) // what an earlier, killed demo left

	old := dut.Version{Name: "v1"}
	what := "a warm upgrade of the teamd container"
	if fromSONiC {
		old = dut.Version{Name: "sonic", SONiC: true}
		what = "the first warm upgrade, from SONiC's teamd container (no shim) onto teamdwarm's"
	}
	fmt.Printf("teamdwarm demo: %s, %d fast-mode LAGs x %d members, Open vSwitch as the LACP peer\n", what, lags, members)
	step(1, "building teamd images %s and v2 from %s (docker import: no registry), the topology and the peer", old.Name, bin)
	box, err := dut.NewBox(ctx, dut.BoxOptions{LAGs: lags, Members: members, Bins: bins, Dir: scratch,
		Versions: []dut.Version{old, {Name: "v2"}}})
	if err != nil {
		return err
	}
	defer func() {
		step(5, "cleaning up: containers, images, namespaces, Open vSwitch")
		if cerr := box.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	fmt.Printf("      images %s, %s\n      DUT namespace %s (container %.12s) <- %d veth pairs -> PEER namespace %s (ovs-vswitchd)\n",
		box.Images[old.Name], box.Images["v2"], box.Bed.DUT, box.Holder.ID, lags*members, box.Bed.PEER)

	if fromSONiC {
		step(2, "starting the SONiC-shaped teamd container %s: teammgrd starts one teamd per LAG itself (daemonized, pid file, -L), no teamd-shim", box.Name)
	} else {
		step(2, "starting the v1 teamd container %s: one teamd-shim and teamd per LAG", box.Name)
	}
	id, err := box.RunTeamd(ctx, old.Name)
	if err != nil {
		return err
	}
	fmt.Printf("      container %.12s running; every member collecting and distributing at the peer\n", id)
	w, err := box.Bed.Mark(ctx)
	if err != nil {
		return err
	}
	cpu, err := startCost(ctx, box, id)
	if err != nil {
		return fmt.Errorf("measuring CPU: %w", err)
	}
	defer cpu.close()
	rest, err := cpu.atRest(ctx, 2*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("      %s\n", rest)

	args := []string{"upgrade", "--container", box.Name, "--image", box.Images["v2"], "--dir", box.Dir}
	step(3, "teamd-warm %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, abs("teamd-warm"), args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // it rolls back, or finishes past the cutover
	cmd.WaitDelay = time.Minute
	began := time.Now()
	upgradeErr := cmd.Run()

	step(4, "what the peer saw, three fast periods past the upgrade")
	select {
	case <-time.After(3500 * time.Millisecond): // an expiry the upgrade caused shows within 3 s
	case <-ctx.Done():
		return ctx.Err()
	}
	v, err := box.Bed.Judge(ctx, w)
	if err != nil {
		return err
	}
	if err := v.WriteTable(os.Stdout); err != nil {
		return err
	}
	fmt.Printf("\n%s\n", cpu.handoff(box.Dir, lags))
	switch {
	case upgradeErr != nil:
		return fmt.Errorf("teamd-warm upgrade failed: %w", upgradeErr)
	case !v.Clean():
		return fmt.Errorf("the peer noticed the upgrade (largest gap %s)", largestGap(v, box.Bed.Observer(), began, box.Dir))
	}
	fmt.Printf("\nevery LAG survived the fast-mode teamd upgrade: no member disabled or expired, no PDU without Sync, largest gap between PDUs %s\n",
		largestGap(v, box.Bed.Observer(), began, box.Dir))
	return nil
}

// largestGap names the member with the largest gap and when it ended, in
// teamd-warm's clock (its progress lines); and, split at the cutover, the
// largest before it (the new container's start-up beside the old one) and
// from it on (the handoffs), so that a reader can tell the two apart.
func largestGap(v testbed.Verdict, obs *testbed.Observer, began time.Time, dir string) string {
	var worst testbed.MemberVerdict
	for _, m := range v.Members {
		if m.MaxGap > worst.MaxGap {
			worst = m
		}
	}
	if worst.MaxGap == 0 {
		return "none (no PDU seen)"
	}
	line := fmt.Sprintf("%v (%s on %s, ending %.2fs into teamd-warm's run)", worst.MaxGap.Round(time.Millisecond),
		worst.Member, worst.LAG, worst.MaxGapEnd.Sub(began).Seconds())
	rec, err := statefile.ReadFile(filepath.Join(dir, proto.FileName("", proto.KindCutover)))
	c, ok := rec.(*proto.Cutover)
	if err != nil || !ok {
		return line // no cutover: nothing to split at
	}
	cut := c.Started
	var before, after time.Duration
	for _, m := range v.Members {
		ps := obs.PDUs(m.Peer, v.From, v.To)
		for i := 1; i < len(ps); i++ {
			if g := ps[i].At.Sub(ps[i-1].At); ps[i].At.Before(cut) {
				before = max(before, g)
			} else {
				after = max(after, g)
			}
		}
	}
	return fmt.Sprintf("%s; before the cutover %v, from it on %v", line, before.Round(time.Millisecond), after.Round(time.Millisecond))
}
