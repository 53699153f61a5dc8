// Command teamdwarm-demo is the README's main job: on this machine's
// dockerd it builds teamd images v1 and v2 from the static binaries in
// bin/, a switch of N fast-mode LAGs facing Open vSwitch as the LACP peer,
// starts the v1 teamd container, runs "teamd-warm upgrade" to v2, and
// prints the supervisor's report and the peer's verdict. With -from sonic
// the old container is SONiC-shaped instead (teammgrd's teamds, no shim:
// what a switch runs before teamdwarm), and the upgrade is the first one.
// It removes everything it made, also when interrupted, and exits 0 only
// if the upgrade succeeded and the peer noticed nothing. With -json the
// narration goes to stderr and the result, teamd-warm's report, the
// peer's verdict and the CPU figures included, to stdout as one JSON
// object.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	var cfg config
	flag.IntVar(&cfg.lags, "lags", 8, "LAGs")
	flag.IntVar(&cfg.members, "members", 2, "members per LAG")
	flag.StringVar(&cfg.bin, "bin", "bin", "directory with teamd-shim, teamd-warm, teamdsim, pause and teammgrd")
	from := flag.String("from", "teamdwarm", "the old container: teamdwarm (an image of teamdwarm's, v1) or sonic (SONiC's teamd container, no shim: the first upgrade)")
	asJSON := flag.Bool("json", false, "print the result as JSON on stdout, the narration on stderr")
	flag.Parse()
	if *from != "teamdwarm" && *from != "sonic" {
		fmt.Fprintf(os.Stderr, "teamdwarm-demo: -from %q: want teamdwarm or sonic\n", *from)
		os.Exit(2)
	}
	cfg.fromSONiC, cfg.json, cfg.out = *from == "sonic", *asJSON, os.Stdout
	if cfg.json {
		cfg.out = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res := &result{LAGs: cfg.lags, Members: cfg.members, From: *from}
	err := demo(ctx, cfg, res)
	stop()
	if err != nil {
		res.Error = err.Error()
	}
	res.OK = err == nil
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(res); jerr != nil {
			fmt.Fprintf(os.Stderr, "teamdwarm-demo: %v\n", jerr)
			os.Exit(1)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "teamdwarm-demo: %v\n", err)
		os.Exit(1)
	}
}

// config is what the flags ask for.
type config struct {
	lags, members int
	bin           string
	fromSONiC     bool
	json          bool      // the result as JSON on stdout
	out           io.Writer // the narration
}

// result is the demo's outcome, what -json prints. Durations are in
// nanoseconds, CPU in cores (1 is one core busy).
type result struct {
	LAGs    int    `json:"lags"`
	Members int    `json:"members"`
	From    string `json:"from"` // teamdwarm or sonic
	OK      bool   `json:"ok"`   // the upgrade succeeded and the peer noticed nothing
	Error   string `json:"error,omitempty"`
	// Rest is the bed's CPU at rest before the upgrade.
	Rest *restCost `json:"cpu_at_rest,omitempty"`
	// Upgrade is teamd-warm's report (supervisor.Report), as its --json
	// prints it.
	Upgrade json.RawMessage `json:"upgrade,omitempty"`
	// Peer is what the peer saw, per member, from before the upgrade to
	// three fast periods past it.
	Peer       *testbed.Verdict `json:"peer,omitempty"`
	Handoff    *handoffCost     `json:"cpu_of_the_handoff,omitempty"`
	LargestGap *gapSummary      `json:"largest_gap,omitempty"`
}

func (c config) step(n int, format string, args ...any) {
	fmt.Fprintf(c.out, "\n[%d/5] %s\n", n, fmt.Sprintf(format, args...))
}

func demo(ctx context.Context, cfg config, res *result) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: network namespaces and the Docker Engine")
	}
	out, lags := cfg.out, cfg.lags
	abs := func(name string) string { p, _ := filepath.Abs(filepath.Join(cfg.bin, name)); return p }
	bins := dut.Binaries{Shim: abs("teamd-shim"), Teamd: abs("teamdsim"), Pause: abs("pause"), Teammgrd: abs("teammgrd")}
	scratch, err := os.MkdirTemp("", "teamdwarm-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	_ = dut.Sweep(ctx) // what an earlier, killed demo left

	old := dut.Version{Name: "v1"}
	what := "a warm upgrade of the teamd container"
	if cfg.fromSONiC {
		old = dut.Version{Name: "sonic", SONiC: true}
		what = "the first warm upgrade, from SONiC's teamd container (no shim) onto teamdwarm's"
	}
	fmt.Fprintf(out, "teamdwarm demo: %s, %d fast-mode LAGs x %d members, Open vSwitch as the LACP peer\n", what, lags, cfg.members)
	cfg.step(1, "building teamd images %s and v2 from %s (docker import: no registry), the topology and the peer", old.Name, cfg.bin)
	box, err := dut.NewBox(ctx, dut.BoxOptions{LAGs: lags, Members: cfg.members, Bins: bins, Dir: scratch,
		Versions: []dut.Version{old, {Name: "v2"}}})
	if err != nil {
		return err
	}
	defer func() {
		cfg.step(5, "cleaning up: containers, images, namespaces, Open vSwitch")
		if cerr := box.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	fmt.Fprintf(out, "      images %s, %s\n      DUT namespace %s (container %.12s) <- %d veth pairs -> PEER namespace %s (ovs-vswitchd)\n",
		box.Images[old.Name], box.Images["v2"], box.Bed.DUT, box.Holder.ID, lags*cfg.members, box.Bed.PEER)

	if cfg.fromSONiC {
		cfg.step(2, "starting the SONiC-shaped teamd container %s: teammgrd starts one teamd per LAG itself (daemonized, pid file, -L), no teamd-shim", box.Name)
	} else {
		cfg.step(2, "starting the v1 teamd container %s: one teamd-shim and teamd per LAG", box.Name)
	}
	id, err := box.RunTeamd(ctx, old.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "      container %.12s running; every member collecting and distributing at the peer\n", id)
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
	res.Rest = &rest
	fmt.Fprintf(out, "      %s\n", rest)

	args := []string{"upgrade", "--container", box.Name, "--image", box.Images["v2"], "--dir", box.Dir}
	if cfg.json {
		args = append(args, "--json")
	}
	cfg.step(3, "teamd-warm %s", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, abs("teamd-warm"), args...)
	var report bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, out
	if cfg.json {
		cmd.Stdout = &report
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // it rolls back, or finishes past the cutover
	cmd.WaitDelay = time.Minute
	began := time.Now()
	upgradeErr := cmd.Run()
	if cfg.json {
		if json.Valid(report.Bytes()) {
			res.Upgrade = json.RawMessage(bytes.TrimSpace(report.Bytes()))
		} else {
			fmt.Fprintf(out, "teamd-warm printed no JSON report:\n%s\n", report.Bytes())
		}
	}

	cfg.step(4, "what the peer saw, three fast periods past the upgrade")
	select {
	case <-time.After(3500 * time.Millisecond): // an expiry the upgrade caused shows within 3 s
	case <-ctx.Done():
		return ctx.Err()
	}
	v, err := box.Bed.Judge(ctx, w)
	if err != nil {
		return err
	}
	res.Peer = &v
	if err := v.WriteTable(out); err != nil {
		return err
	}
	h := cpu.handoff(box.Dir, lags)
	res.Handoff = &h
	fmt.Fprintf(out, "\n%s\n", h)
	gap := largestGap(v, box.Bed.Observer(), began, box.Dir)
	res.LargestGap = &gap
	switch {
	case upgradeErr != nil:
		return fmt.Errorf("teamd-warm upgrade failed: %w", upgradeErr)
	case !v.Clean():
		return fmt.Errorf("the peer noticed the upgrade (largest gap %s)", gap)
	}
	fmt.Fprintf(out, "\nevery LAG survived the fast-mode teamd upgrade: no member disabled or expired, no PDU without Sync, largest gap between PDUs %s\n", gap)
	return nil
}

// gapSummary is the largest gap the peer saw: on which member, when it
// ended in teamd-warm's clock (its progress lines); and, split at the
// cutover, the largest before it (the new container's start-up beside the
// old one) and from it on (the handoffs), so that a reader can tell the
// two apart.
type gapSummary struct {
	Gap    time.Duration `json:"gap_ns"` // 0: no PDU seen
	LAG    string        `json:"lag,omitempty"`
	Member string        `json:"member,omitempty"`
	Ended  time.Duration `json:"ended_ns"` // into teamd-warm's run
	// Before and After split it at the cutover; both 0 without one.
	Before time.Duration `json:"before_cutover_ns"`
	After  time.Duration `json:"from_cutover_ns"`
	cut    bool
}

func (g gapSummary) String() string {
	if g.Gap == 0 {
		return "none (no PDU seen)"
	}
	line := fmt.Sprintf("%v (%s on %s, ending %.2fs into teamd-warm's run)", g.Gap.Round(time.Millisecond), g.Member, g.LAG, g.Ended.Seconds())
	if !g.cut {
		return line // no cutover: nothing to split at
	}
	return fmt.Sprintf("%s; before the cutover %v, from it on %v", line, g.Before.Round(time.Millisecond), g.After.Round(time.Millisecond))
}

func largestGap(v testbed.Verdict, obs *testbed.Observer, began time.Time, dir string) gapSummary {
	var worst testbed.MemberVerdict
	for _, m := range v.Members {
		if m.MaxGap > worst.MaxGap {
			worst = m
		}
	}
	if worst.MaxGap == 0 {
		return gapSummary{}
	}
	g := gapSummary{Gap: worst.MaxGap, LAG: worst.LAG, Member: worst.Member, Ended: worst.MaxGapEnd.Sub(began)}
	rec, err := statefile.ReadFile(filepath.Join(dir, proto.FileName("", proto.KindCutover)))
	c, ok := rec.(*proto.Cutover)
	if err != nil || !ok {
		return g
	}
	g.cut = true
	for _, m := range v.Members {
		ps := obs.PDUs(m.Peer, v.From, v.To)
		for i := 1; i < len(ps); i++ {
			if gap := ps[i].At.Sub(ps[i-1].At); ps[i].At.Before(c.Started) {
				g.Before = max(g.Before, gap)
			} else {
				g.After = max(g.After, gap)
			}
		}
	}
	return g
}
