package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamnl"
)

// Scenarios are the lab's, in the order they run.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "cold-start", Needs: []string{"debian"}, Run: coldStart},
		{Name: "sigterm", Needs: []string{"debian"}, Run: sigterm},
		{Name: "sigusr1-refused-stock", Needs: []string{"debian"}, Run: sigusr1RefusedStock},
		{Name: "run-dir-mismatch", Needs: []string{"debian"}, Run: runDirMismatch},
		{Name: "kernel-reader", Needs: []string{"debian"}, Run: kernelReader},
		{Name: "sonic-warm-stop", Needs: []string{"sonic"}, Run: sonicWarmStop},
		{Name: "handoff-sonic-to-hld", Needs: []string{"sonic", "hld"}, Run: handoffSONiCToHLD},
		{Name: "first-upgrade-sonic", Needs: []string{"sonic", "hld"}, Run: firstUpgradeSONiC},
		{Name: "handoff-hld-5x", Needs: []string{"hld"}, Run: handoffHLDFiveTimes},
		{Name: "handoff-deadline", Needs: []string{"hld"}, Run: handoffDeadline},
	}
}

// Bounds of bringing a LAG up in the VM (software emulation is slow).
const (
	activeWithin     = 30 * time.Second
	negotiatedWithin = 30 * time.Second
	flowingWithin    = 15 * time.Second
)

// bringUp starts every LAG's teamd td under a shim, waits until each
// .active lists both members, addresses the team devices, waits until the
// bonding peer aggregates every slave, and starts the traffic.
func (e *Env) bringUp(ctx context.Context, td Teamd, o ShimOpts) ([]*Proc, error) {
	start := time.Now()
	if o.Records == "" {
		o.Records = e.Records()
	}
	if o.Dump == "" && td.Name != "debian" {
		o.Dump = e.DumpDir()
	}
	var shims []*Proc
	for _, l := range e.Topo.LAGs {
		p, err := e.StartShim(l, td, o)
		if err != nil {
			return nil, err
		}
		shims = append(shims, p)
	}
	for i, l := range e.Topo.LAGs {
		rec, err := AwaitRecord(ctx, o.Records, l.Name, proto.KindActive, activeWithin, func(r proto.Record) bool {
			return len(r.(*proto.Active).Members) == len(l.Members)
		})
		if err != nil {
			if shims[i].Running() {
				return nil, fmt.Errorf("%w (its last .active: %v)", err, lastActive(o.Records, l.Name))
			}
			return nil, fmt.Errorf("%s's shim exited: %w", l.Name, err)
		}
		if a := rec.(*proto.Active); a.Teamd == nil || a.Teamd.Profile != profileOf(td) {
			return nil, fmt.Errorf("%s: the shim took %s for %+v, want profile %s", l.Name, td.Program, a.Teamd, profileOf(td))
		}
	}
	e.Figure("active", time.Since(start).Seconds(), "every .active with both members after %.1fs", time.Since(start).Seconds())
	return shims, e.settle(ctx, start)
}

// settle addresses the team devices, waits until the bonding peer
// aggregates every slave and the kernel carries every port, and starts
// the traffic.
func (e *Env) settle(ctx context.Context, start time.Time) error {
	for _, l := range e.Topo.LAGs {
		if err := e.Topo.Address(ctx, l); err != nil {
			return err
		}
	}
	if err := e.awaitAggregated(ctx, negotiatedWithin); err != nil {
		return err
	}
	// The data plane is settled only once the kernel carries every port:
	// a flow hashed to a port enabled later would move under the count.
	if err := e.awaitEnabled(ctx, negotiatedWithin); err != nil {
		return err
	}
	e.Figure("negotiated", time.Since(start).Seconds(), "the bonding peer aggregates every member after %.1fs", time.Since(start).Seconds())
	var err error
	if e.Traffic, err = StartTraffic(e.Topo.LAGs); err != nil {
		return err
	}
	return e.Traffic.Flowing(ctx, flowingWithin)
}

func profileOf(td Teamd) string {
	switch td.Name {
	case "debian":
		return string(teamd.ProfileStock)
	case "sonic":
		return string(teamd.ProfileSONiC)
	}
	return string(teamd.ProfileHLD)
}

func lastActive(dir, lag string) string {
	rec, err := statefile.ReadFile(filepath.Join(dir, proto.FileName(lag, proto.KindActive)))
	if err != nil {
		return err.Error()
	}
	a := rec.(*proto.Active)
	return fmt.Sprintf("epoch %d, members %v", a.Epoch, a.Members)
}

// awaitAggregated waits until every bond aggregates every slave.
func (e *Env) awaitAggregated(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		bad := ""
		for _, l := range e.Topo.LAGs {
			if st, ok := e.Peer.Last(l.Bond); !ok || !st.Aggregated() {
				bad = fmt.Sprintf("%s: %+v", l.Bond, st)
				break
			}
		}
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the bonding peer does not aggregate every member within %v: %s", timeout, bad)
		}
		time.Sleep(SampleEvery) // the sampler's own period
	}
}

// awaitEnabled waits until every LAG's team device has carrier and every
// port enabled, in the kernel.
func (e *Env) awaitEnabled(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var last *proto.KernelLAG
		var err error
		ok := true
		for _, l := range e.Topo.LAGs {
			if last, err = e.Kernel(l); err != nil || !last.Carrier || enabled(last) != len(l.Members) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the kernel does not carry every port within %v: %v (%v)", timeout, last, err)
		}
		time.Sleep(SampleEvery) // the team driver has no event the lab waits on here
	}
}

func enabled(k *proto.KernelLAG) int {
	n := 0
	for _, p := range k.Ports {
		if p.Enabled {
			n++
		}
	}
	return n
}

// judge checks a window [from, to] at the peer: the bonds' own state at
// every sample, and the traffic's losses. It records the figures.
func (e *Env) judge(from, to time.Time, lags []LAG) error {
	var errs []error
	samples, gap := 0, time.Duration(0)
	for _, l := range lags {
		v := e.Peer.Judge(l.Bond, from, to)
		samples += v.Samples
		gap = max(gap, v.MaxSampleGap)
		for _, p := range v.Problems {
			errs = append(errs, fmt.Errorf("%s: %s", l.Bond, p))
		}
	}
	e.Figure("peer_samples", samples, "peer: %d samples (largest gap between samples %v), aggregator stable, every slave in sync", samples, gap.Round(time.Millisecond))
	return errors.Join(errs...)
}

// membersCarry checks that the flows spread over every member: each
// DUT-side port sent and received data (more than its LACPDUs).
func (e *Env) membersCarry(ctx context.Context) error {
	js, err := output(ctx, "ip", "-n", DUT, "-s", "-j", "link", "show")
	if err != nil {
		return err
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX map[string]int `json:"rx"`
			TX map[string]int `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(js), &links); err != nil {
		return fmt.Errorf("ip -s -j link: %w", err)
	}
	const least = 100 // a minute of LACPDUs is 60
	var errs []error
	for _, l := range e.Topo.LAGs {
		for _, m := range l.Members {
			for _, ln := range links {
				if ln.Name == m.DUT && (ln.Stats.TX["packets"] < least || ln.Stats.RX["packets"] < least) {
					errs = append(errs, fmt.Errorf("%s carries no share of the traffic: %d packets out, %d in", m.DUT, ln.Stats.TX["packets"], ln.Stats.RX["packets"]))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// count closes the traffic window and checks that nothing was lost.
func (e *Env) count() error {
	ds := e.Traffic.Count()
	sent, recv := 0, 0
	for _, d := range ds {
		sent += d.Sent
		recv += d.Received
	}
	lost, err := Lost(ds)
	e.Figure("traffic", ds, "traffic %d directions: sent %d, received %d, lost %d", len(ds), sent, recv, lost)
	if err != nil {
		err = fmt.Errorf("%w\ndrops the kernel counted: %s", err, drops(context.Background()))
	}
	return err
}

// drops lists the links of both namespaces whose counters show dropped or
// failed packets: where a lost packet went.
func drops(ctx context.Context) string {
	var out []string
	for _, ns := range []string{DUT, PEER} {
		js, err := output(ctx, "ip", "-n", ns, "-s", "-j", "link", "show")
		if err != nil {
			return err.Error()
		}
		var links []struct {
			Name  string `json:"ifname"`
			Stats struct {
				RX map[string]int `json:"rx"`
				TX map[string]int `json:"tx"`
			} `json:"stats64"`
		}
		if err := json.Unmarshal([]byte(js), &links); err != nil {
			return err.Error()
		}
		for _, l := range links {
			for dir, m := range map[string]map[string]int{"rx": l.Stats.RX, "tx": l.Stats.TX} {
				for k, v := range m {
					if v > 0 && k != "bytes" && k != "packets" && k != "multicast" {
						out = append(out, fmt.Sprintf("%s %s %s %s=%d", ns, l.Name, dir, k, v))
					}
				}
			}
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// wireGaps records the largest gap between the DUT's PDUs at the peer,
// per member, and returns the members' verdicts.
func (e *Env) wire(from, to time.Time, lags []LAG) []testbed.MemberVerdict {
	var out []testbed.MemberVerdict
	var largest time.Duration
	for _, l := range lags {
		for _, m := range l.Members {
			prior, _ := e.Wire.Before(m.Peer, from)
			v := testbed.JudgeWire(m, prior, e.Wire.PDUs(m.Peer, from, to), from, to)
			largest = max(largest, v.MaxGap)
			out = append(out, v)
		}
	}
	e.Figure("largest_pdu_gap_ms", largest.Milliseconds(), "largest gap between PDUs at the peer %v", largest.Round(time.Millisecond))
	return out
}

// 1. Cold start under the shim: .active lists both members, the kernel's
// LAG has carrier and both ports enabled, traffic flows without loss, the
// bonding peer aggregates both slaves.
func coldStart(ctx context.Context, e *Env) error {
	if _, err := e.bringUp(ctx, e.Teamds["debian"], ShimOpts{}); err != nil {
		return err
	}
	from := time.Now()
	time.Sleep(3 * time.Second) // three fast periods of traffic and LACP
	to := time.Now()
	var errs []error
	for _, l := range e.Topo.LAGs {
		k, err := e.Kernel(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !k.Up || !k.Carrier || len(k.Ports) != 2 || !k.Ports[0].Enabled || !k.Ports[1].Enabled {
			errs = append(errs, fmt.Errorf("%s in the kernel: %s", l.Name, k))
		}
	}
	// What an operator sees: teamd-shim status shows the teamd and the
	// kernel's LAG of each .active.
	if out, err := output(ctx, e.Bin("teamd-shim"), "status", e.Records()); err != nil {
		errs = append(errs, err)
	} else if strings.Count(out, "teamd stock, kernel: 2/2 ports enabled, carrier yes") != len(e.Topo.LAGs) {
		errs = append(errs, fmt.Errorf("teamd-shim status does not show each LAG's teamd and kernel (its .active is refreshed within %v of a change):\n%s", 2*time.Second, out))
	}
	errs = append(errs, e.count(), e.membersCarry(ctx), e.judge(from, to, e.Topo.LAGs))
	return errors.Join(errs...)
}

// 2. SIGTERM to the shim: teamd quits as teamd does (its ports removed,
// the team device destroyed, the peer sees the LAG end) and the shim exits
// with teamd's status.
func sigterm(ctx context.Context, e *Env) error {
	shims, err := e.bringUp(ctx, e.Teamds["debian"], ShimOpts{})
	if err != nil {
		return err
	}
	l := e.Topo.LAGs[0]
	pid, err := TeamdPID(l.Name)
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // traffic across both LAGs before the stop
	if err := e.count(); err != nil {
		return err
	}
	sent := time.Now()
	if err := shims[0].Signal(syscall.SIGTERM); err != nil {
		return err
	}
	code, err := shims[0].Wait(15 * time.Second)
	if err != nil {
		return err
	}
	e.Figure("exit", code, "the shim exited %d, %v after SIGTERM", code, time.Since(sent).Round(time.Millisecond))
	var errs []error
	if code != 0 {
		errs = append(errs, fmt.Errorf("the shim exited %d; teamd exits 0 on SIGTERM", code))
	}
	if Alive(pid) {
		errs = append(errs, fmt.Errorf("teamd (pid %d) still runs", pid))
	}
	if _, err := e.Kernel(l); !errors.Is(err, teamnl.ErrNoDevice) {
		errs = append(errs, fmt.Errorf("the team device is still there (stock teamd removes it on quit): %v", err))
	}
	// Stock teamd removes its ports on quit (the veths' carrier drops):
	// the peer sees the LAG end, not a LAG silently left forwarding.
	gone := time.Duration(0)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(SampleEvery) {
		if st, ok := e.Peer.Last(l.Bond); ok && !st.Aggregated() {
			gone = time.Since(sent)
			break
		}
	}
	if gone == 0 {
		errs = append(errs, fmt.Errorf("%s: the peer still aggregates it 5s after teamd quit", l.Bond))
	} else {
		e.Figure("peer_saw_quit_ms", gone.Milliseconds(), "the peer saw the LAG end %v after SIGTERM", gone.Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

// 3. SIGUSR1 to an active shim over a teamd that cannot stop warm: refused,
// teamd keeps the LAG, the peer sees nothing for longer than its expiry,
// and not one packet is lost.
func sigusr1RefusedStock(ctx context.Context, e *Env) error {
	shims, err := e.bringUp(ctx, e.Teamds["debian"], ShimOpts{})
	if err != nil {
		return err
	}
	from := time.Now()
	for _, s := range shims {
		if err := s.Signal(syscall.SIGUSR1); err != nil {
			return err
		}
	}
	for _, s := range shims {
		if err := s.AwaitLog(ctx, "SIGUSR1 refused: this teamd cannot stop warm", 10*time.Second); err != nil {
			return err
		}
	}
	time.Sleep(4 * time.Second) // past the peer's 3 s expiry: had teamd died, the peer would show it
	to := time.Now()
	var errs []error
	for i, l := range e.Topo.LAGs {
		pid, err := TeamdPID(l.Name)
		if err != nil || !Alive(pid) || !shims[i].Running() {
			errs = append(errs, fmt.Errorf("%s: teamd (pid %d, %v) or its shim is gone", l.Name, pid, err))
		}
		if _, err := os.Stat(filepath.Join(e.Records(), proto.FileName(l.Name, proto.KindSnapshot))); err == nil {
			errs = append(errs, fmt.Errorf("%s: a snapshot was written", l.Name))
		}
	}
	for _, v := range e.wire(from, to, e.Topo.LAGs) {
		if v.PDUs == 0 || v.OutOfSync > 0 || v.MaxGap > testbed.GapLimit {
			errs = append(errs, fmt.Errorf("%s at the peer: %d PDUs, %d out of sync, largest gap %v", v.Member, v.PDUs, v.OutOfSync, v.MaxGap))
		}
	}
	errs = append(errs, e.count(), e.judge(from, to, e.Topo.LAGs))
	return errors.Join(errs...)
}

// 4. A --run-dir where the wrapped teamd does not listen (stock teamd's run
// directory is compiled in): a clear error naming both paths, within
// 15 s, and teamd stopped.
func runDirMismatch(ctx context.Context, e *Env) error {
	l := e.Topo.LAGs[0]
	elsewhere := filepath.Join(e.Dir, "run")
	start := time.Now()
	p, err := e.StartShim(l, e.Teamds["debian"], ShimOpts{Records: e.Records(), RunDir: elsewhere})
	if err != nil {
		return err
	}
	code, err := p.Wait(15 * time.Second)
	if err != nil {
		return err
	}
	took := time.Since(start)
	e.Figure("refused_after", took.Seconds(), "refused after %.1fs, exit %d", took.Seconds(), code)
	e.Figure("traffic", nil, "no traffic: teamd never made the team device")
	var errs []error
	log := p.Log.String()
	for _, want := range []string{"teamd listens on /var/run/teamd/" + l.Name + ".sock", "not on " + filepath.Join(elsewhere, l.Name+".sock")} {
		if !strings.Contains(log, want) {
			errs = append(errs, fmt.Errorf("the error does not say %q", want))
		}
	}
	if code != 1 {
		errs = append(errs, fmt.Errorf("exit %d, want 1", code))
	}
	if pid, err := TeamdPID(l.Name); err == nil && Alive(pid) {
		errs = append(errs, fmt.Errorf("teamd (pid %d) was left running", pid))
	}
	return errors.Join(errs...)
}

// 5. The kernel-state reader agrees, port by port, with teamdctl, with
// libteam's own teamnl and with ip -d link.
func kernelReader(ctx context.Context, e *Env) error {
	if _, err := e.bringUp(ctx, e.Teamds["debian"], ShimOpts{}); err != nil {
		return err
	}
	var errs []error
	checked := 0
	for _, l := range e.Topo.LAGs {
		k, err := e.Kernel(l)
		if err != nil {
			return err
		}
		out, err := output(ctx, "ip", "netns", "exec", DUT, e.Teamds["debian"].Ctl, l.Name, "state", "dump")
		if err != nil {
			return err
		}
		var st teamd.State
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("teamdctl %s state dump: %w", l.Name, err)
		}
		var names []string
		for _, p := range k.Ports {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, st.PortNames()) {
			errs = append(errs, fmt.Errorf("%s: the kernel has ports %v, teamdctl %v", l.Name, names, st.PortNames()))
		}
		links, err := ipLinks(ctx)
		if err != nil {
			return err
		}
		if tl := links[l.Name]; tl == nil || hasFlag(tl, "LOWER_UP") != k.Carrier || hasFlag(tl, "UP") != k.Up || tl.Ifindex != k.Ifindex {
			errs = append(errs, fmt.Errorf("%s: ip -d link says %+v, the reader %s", l.Name, tl, k))
		}
		for _, p := range k.Ports {
			checked++
			sp := st.Ports[p.Name]
			enabled, err := output(ctx, "ip", "netns", "exec", DUT, filepath.Join(filepath.Dir(e.Teamds["debian"].Ctl), "teamnl"), l.Name, "getoption", "enabled", "-p", p.Name)
			if err != nil {
				return err
			}
			link := links[p.Name]
			switch {
			case strings.TrimSpace(enabled) != fmt.Sprint(p.Enabled):
				errs = append(errs, fmt.Errorf("%s: libteam's teamnl says enabled %s, the reader %v", p.Name, strings.TrimSpace(enabled), p.Enabled))
			case link == nil || link.Master != l.Name || link.Info.SlaveKind != "team" || hasFlag(link, "LOWER_UP") != p.Carrier || link.Ifindex != p.Ifindex:
				errs = append(errs, fmt.Errorf("%s: ip -d link says %+v, the reader %+v", p.Name, link, p))
			case sp.IfInfo.Ifindex != p.Ifindex || sp.Link.Up != p.LinkUp:
				errs = append(errs, fmt.Errorf("%s: teamdctl says ifindex %d link %v, the reader %+v", p.Name, sp.IfInfo.Ifindex, sp.Link.Up, p))
			case p.Enabled != sp.Runner.Selected:
				errs = append(errs, fmt.Errorf("%s: enabled %v in the kernel, selected %v in teamd", p.Name, p.Enabled, sp.Runner.Selected))
			}
		}
	}
	if e.Record != "" {
		if err := e.recordNetlink(); err != nil {
			errs = append(errs, err)
		}
	}
	e.Figure("ports", checked, "%d ports agree with teamdctl, libteam's teamnl and ip -d link", checked)
	errs = append(errs, e.count())
	return errors.Join(errs...)
}

// ipLink is what ip -d -j link says of one link.
type ipLink struct {
	Ifindex int      `json:"ifindex"`
	Name    string   `json:"ifname"`
	Flags   []string `json:"flags"`
	Master  string   `json:"master"`
	Info    struct {
		SlaveKind string `json:"info_slave_kind"`
	} `json:"linkinfo"`
}

func hasFlag(l *ipLink, f string) bool { return slices.Contains(l.Flags, f) }

func ipLinks(ctx context.Context) (map[string]*ipLink, error) {
	out, err := output(ctx, "ip", "-n", DUT, "-d", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var ls []*ipLink
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		return nil, fmt.Errorf("ip -d -j link: %w", err)
	}
	m := map[string]*ipLink{}
	for _, l := range ls {
		m[l.Name] = l
	}
	return m, nil
}

// 6. SONiC's teamd under the shim: a cold start as in 1; SIGUSR1 gives
// SONiC's warm stop: the snapshot holds the LAG's state, SONiC's dump files
// are in the -L directory and teamd-state reads them, the kernel's ports
// and carrier are unchanged, and the peer saw no PDU without sync before
// the last one.
func sonicWarmStop(ctx context.Context, e *Env) error {
	shims, err := e.bringUp(ctx, e.Teamds["sonic"], ShimOpts{})
	if err != nil {
		return err
	}
	l := e.Topo.LAGs[0]
	before, err := e.Kernel(l)
	if err != nil {
		return err
	}
	from := time.Now()
	sent := time.Now()
	if err := shims[0].Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	rec, err := AwaitRecord(ctx, e.Records(), l.Name, proto.KindSnapshot, 10*time.Second, nil)
	if err != nil {
		return err
	}
	snap := rec.(*proto.Snapshot)
	e.Figure("snapshot_after_ms", time.Since(sent).Milliseconds(), "snapshot %v after SIGUSR1 (teamd %s)", time.Since(sent).Round(time.Millisecond), snap.TeamdStop)
	code, err := shims[0].Wait(10 * time.Second)
	var errs []error
	if err != nil || code != 0 {
		errs = append(errs, fmt.Errorf("the shim after the handoff: exit %d, %v", code, err))
	}
	// The data plane carries on, the kernel LAG as it was: looked at
	// first, for nothing speaks LACP now and the peer expires the members
	// 3 s after the parting PDU (the checks below take their time when
	// the binaries come over 9p).
	e.Traffic.Reset()
	time.Sleep(time.Second)
	errs = append(errs, e.count())
	if len(snap.Members) != 2 || snap.Teamd == nil || snap.Teamd.Profile != "sonic" {
		errs = append(errs, fmt.Errorf("snapshot: %d members, teamd %+v", len(snap.Members), snap.Teamd))
	}
	for _, m := range snap.Members {
		if m.State != "current" || !m.Selected || !m.Actor.State.Has(proto.InService) || m.Partner.System.IsZero() || len(m.LastRx) != proto.FrameLen {
			errs = append(errs, fmt.Errorf("snapshot member %s: %+v", m.Name, m))
		}
	}
	// SONiC's dump files, read by teamd-state.
	for _, name := range []string{l.Members[0].DUT, l.Members[1].DUT, l.Name} {
		path := filepath.Join(e.DumpDir(), name)
		if out, err := output(ctx, e.Bin("teamd-state"), "show", path); err != nil {
			errs = append(errs, fmt.Errorf("teamd-state show %s: %w", path, err))
		} else if !strings.Contains(out, "teamd") {
			errs = append(errs, fmt.Errorf("teamd-state show %s: %q", path, out))
		}
	}
	// The kernel, as the snapshot took it and as it is now.
	after, err := e.Kernel(l)
	if err != nil {
		return err
	}
	if d := before.Diff(snap.Kernel); len(d) > 0 {
		errs = append(errs, fmt.Errorf("the kernel's LAG changed by the time of the snapshot: %v", d))
	}
	if d := before.Diff(after); len(d) > 0 {
		errs = append(errs, fmt.Errorf("the kernel's LAG changed after the warm stop: %v", d))
	}
	e.Figure("kernel", len(before.Diff(after)), "kernel LAG unchanged (%s)", after)
	// The peer: every PDU of the old teamd in sync, up to its last.
	var last time.Time
	for _, m := range l.Members {
		if ps := e.Wire.PDUs(m.Peer, from, time.Now()); len(ps) > 0 && ps[len(ps)-1].At.After(last) {
			last = ps[len(ps)-1].At
		}
	}
	if last.IsZero() {
		errs = append(errs, errors.New("the peer saw no PDU of the old teamd after SIGUSR1 (its parting PDU)"))
	}
	for _, v := range e.wire(from.Add(-3*time.Second), last, []LAG{l}) {
		if v.PDUs == 0 {
			errs = append(errs, fmt.Errorf("%s: no PDU at the peer in the 3 s before the warm stop", v.Member))
		}
		if v.OutOfSync > 0 {
			errs = append(errs, fmt.Errorf("%s: %d PDUs without sync before the last one", v.Member, v.OutOfSync))
		}
	}
	return errors.Join(errs...)
}
