package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamdshim"
)

// The first upgrade: from the teamd container a SONiC switch runs today,
// whose teamds teammgrd started without teamd-shim, to one that runs them
// under it. The flow is the same, with the old side's part played by
// teamd-warm itself, from the host (package shimless):
//
//	preflight  every teamd of the old container found by its PID namespace,
//	           checked against its pid file, asked for its StateDump over
//	           its control socket (no exec per LAG); the old teamd probed
//	           for SONiC's warm stop (one exec); the new image's teamd
//	           probed for the passive start (a throwaway container)
//	a1..a3     as always; the standbys are of epoch 2
//	b1         the cutover, then per LAG: a StateDump, SIGUSR1 by PID, the
//	           teamd's exit awaited (SIGKILL past the bound), and the
//	           snapshot written on the old side's behalf from that
//	           StateDump and SONiC's dump files
//	c1         the old container killed, as upgrade_docker kills it
//
// # Epochs and fencing
//
// A shimless container has no records: its teamds are epoch 1 by
// definition (the epoch a shim gives a LAG with no .active), and the new
// container's shims are epoch 2. There is no old shim to fence, so the
// fence is the old teamd's exit: a snapshot is written only once its
// teamd is proven gone (its pidfd says it exited), so a standby taking
// over from a snapshot never speaks beside it, and one taking over
// without (past the deadline, or by failover) goes by the evidence rule
// (the old teamd's packet sockets gone, or the wire quiet) as with any
// old side. Nothing restarts an old teamd: teammgrd starts a teamd only
// when CONFIG_DB adds a LAG (the HLD allows no config change during the
// upgrade), supervisord does not run the teamds, and c1 kills the
// container with SIGKILL so that no daemon of it runs its shutdown.
const firstEpoch = 1

// firstPlan is the old side of a first upgrade.
type firstPlan struct {
	init   int // the old container's init, on the host
	root   *shimless.Root
	teamds map[string]*shimless.Teamd // by LAG
	runDir string                     // the run directory's host path (in root)
}

func (f *firstPlan) close() {
	if f != nil && f.root != nil {
		f.root.Close()
	}
}

// maxParallelDump bounds the StateDumps preflight asks at once.
const maxParallelDump = 16

// findShimless is preflight's look for a first upgrade, when the record
// directory holds no .active: the old container's teamds, each checked
// against SONiC's layout. It returns nil, nil if the container runs
// teamd-shim after all (then the missing records are the problem).
func (r *run) findShimless(p *plan) (*firstPlan, error) {
	o := r.s.opts
	c, err := shimless.Find(p.old.State.Pid)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", o.Container, err)
	}
	switch {
	case c.Shims > 0:
		return nil, fmt.Errorf("no .active record in %s, but container %s runs teamd-shim: do its shims use another record directory (TEAMDWARM_DIR)?", o.Dir, o.Container)
	case len(c.Teamds) == 0:
		return nil, fmt.Errorf("no .active record in %s and no teamd runs in container %s: there is nothing to hand over", o.Dir, o.Container)
	}
	return openFirst(c)
}

// openFirst opens the root of container c and checks each of its teamds
// against SONiC's layout.
func openFirst(c *shimless.Container) (*firstPlan, error) {
	f := &firstPlan{init: c.Init, teamds: map[string]*shimless.Teamd{}}
	var err error
	if f.root, err = shimless.OpenRoot(c.Init); err != nil {
		return nil, err
	}
	if f.runDir, err = f.root.Path(teamd.DefaultRunDir); err != nil {
		f.close()
		return nil, fmt.Errorf("teamd's run directory: %w", err)
	}
	var errs []error
	for i := range c.Teamds {
		t := &c.Teamds[i]
		if err := f.checkLayout(t); err != nil {
			errs = append(errs, fmt.Errorf("%s (teamd pid %d): %w", t.LAG, t.PID, err))
			continue
		}
		f.teamds[t.LAG] = t
	}
	if err := errors.Join(errs...); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// checkLayout checks one teamd against SONiC's layout: its pid file names
// it, its config is readable. Without -L its warm stop writes no dump
// files; the snapshot then has none, which the takeover does not need.
func (f *firstPlan) checkLayout(t *shimless.Teamd) error {
	pf, err := f.root.File(t.PIDFile)
	if err != nil {
		return fmt.Errorf("pid file %s: %w", t.PIDFile, err)
	}
	b, err := statefile.ReadBounded(pf)
	if err != nil {
		return fmt.Errorf("pid file %s: %w", t.PIDFile, err)
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || pid != t.NSPID {
		return fmt.Errorf("pid file %s says %q, but this teamd is pid %d in the container: another teamd's?", t.PIDFile, strings.TrimSpace(string(b)), t.NSPID)
	}
	if t.Config == "" {
		file, ok := t.Args.Value("f")
		if !ok {
			return errors.New("no config (-c JSON or -f FILE) on its command line")
		}
		path, err := f.root.File(file)
		if err == nil {
			b, err = statefile.ReadBounded(path)
		}
		if err != nil {
			return fmt.Errorf("config file %s: %w", file, err)
		}
		t.Config = string(b)
	}
	if _, err := teamdshim.ConfigDigest([]byte(t.Config)); err != nil {
		return err
	}
	return nil
}

// stateDump asks one old teamd.
func (f *firstPlan) stateDump(ctx context.Context, lag string) (*teamd.State, error) {
	t := f.teamds[lag]
	if t == nil {
		return nil, fmt.Errorf("no teamd runs %s", lag)
	}
	return t.StateDump(ctx, filepath.Join(f.runDir, lag+".sock"))
}

// firstActive stands in for the .active a shim would have written for an
// old teamd: what the rest of the flow reads of the old side.
func firstActive(t *shimless.Teamd, st *teamd.State, info *proto.TeamdInfo, container string) *proto.Active {
	digest, _ := teamdshim.ConfigDigest([]byte(t.Config)) // checked by checkLayout
	a := &proto.Active{Schema: proto.SchemaVersion, LAG: t.LAG, Epoch: firstEpoch, ConfigDigest: digest,
		Path: proto.PathCold, Writer: proto.Process{Container: container, PID: t.PID}, Teamd: info}
	if st != nil {
		a.Members = st.PortNames()
	}
	return a
}

// planFirst fills the plan for a first upgrade: every LAG of the old
// container, its state, and what its teamd and the new image's can do.
func (r *run) planFirst(ctx context.Context, p *plan) error {
	o := r.s.opts
	f, err := r.findShimless(p)
	if err != nil {
		return err
	}
	p.first, p.epoch = f, firstEpoch
	info, err := r.probeOld(ctx, p)
	if err != nil {
		return err
	}
	for lag, t := range f.teamds {
		p.lags = append(p.lags, lagPlan{name: lag, active: firstActive(t, nil, info, o.Container), first: true})
	}
	sortLAGs(p.lags)
	r.rep.FirstUpgrade = true
	r.note("first upgrade: %s runs its %d teamds without teamd-shim; at b1 teamd-warm stops each warm itself (SIGUSR1 by PID), waits for it to exit and writes its snapshot, from which the new %s's shim takes over",
		o.Container, len(f.teamds), o.Container)
	return r.probeNew(ctx, p)
}

// probeOld asks the old container's teamd what it can do, as the shims
// ask theirs: one exec of its --help and --version.
func (r *run) probeOld(ctx context.Context, p *plan) (*proto.TeamdInfo, error) {
	var program string
	for _, t := range p.first.teamds {
		program = t.Program
		break
	}
	help, err := r.s.exec(ctx, p.old.ID, []string{program, "--help"})
	if err != nil {
		// libteam's teamd exits 0 on --help; one that fails is no teamd
		// to hand over from.
		return nil, fmt.Errorf("probing the teamd of %s: %w", r.s.opts.Container, err)
	}
	version, _ := r.s.exec(ctx, p.old.ID, []string{program, "--version"})
	return teamd.ProbeOutput(program, help, version), nil
}

// probeTimeout bounds the new image's probe container, from create to
// remove.
const probeTimeout = 30 * time.Second

// probeNew checks that the new image runs its teamds under teamd-shim and
// that its teamd can start passive (without it a standby could not wait
// beside the old teamd): a throwaway container of the image runs
// "teamd-shim probe", with no network.
func (r *run) probeNew(ctx context.Context, p *plan) error {
	e, o := r.s.engine, r.s.opts
	ic := p.newImage.Config
	if ic == nil || len(ic.Entrypoint) == 0 || filepath.Base(ic.Entrypoint[0]) != "teamd-shim" {
		ep := "none"
		if ic != nil && len(ic.Entrypoint) > 0 {
			ep = strings.Join(ic.Entrypoint, " ")
		}
		return fmt.Errorf("image %s does not run teamd-shim (its entrypoint is %s): it cannot take its LAGs over warm", o.Image, ep)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	labels := map[string]string{}
	for k, v := range p.old.Config.Labels {
		labels[k] = v // the operator's bookkeeping (and a test's sweep) sees it
	}
	labels["org.teamdwarm.probe"] = o.Container
	created, err := e.ContainerCreate(ctx, &container.Config{Image: o.Image, Entrypoint: []string{ic.Entrypoint[0]}, Cmd: []string{"probe"}, Labels: labels},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return fmt.Errorf("probing image %s: %w", o.Image, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := e.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			r.warn("could not remove the probe container %s: %v", shortID(created.ID), err)
		}
	}()
	exited, waitErr := e.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := e.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("probing image %s: %w", o.Image, err)
	}
	var code int64
	select {
	case w := <-exited:
		code = w.StatusCode
	case err := <-waitErr:
		return fmt.Errorf("probing image %s: %w", o.Image, err)
	}
	out, err := containerOutput(ctx, r.s.engine, created.ID)
	if err != nil {
		return fmt.Errorf("probing image %s: %w", o.Image, err)
	}
	var info proto.TeamdInfo
	if code != 0 || json.Unmarshal(out, &info) != nil {
		return fmt.Errorf("probing image %s: teamd-shim probe exited %d: %s", o.Image, code, strings.TrimSpace(string(out)))
	}
	if !teamd.Profile(info.Profile).PassiveStart() {
		return fmt.Errorf("image %s runs %s (%s %s): its standbys could not wait beside the old teamds; build it with teamdwarm's teamd (libteam/)",
			o.Image, teamd.Profile(info.Profile).What(), info.Program, info.Version)
	}
	r.progress("image %s: %s (%s)", o.Image, teamd.Profile(info.Profile).What(), info.Version)
	return nil
}

// containerOutput is a stopped container's standard output (its standard
// error if it wrote nothing there), bounded.
func containerOutput(ctx context.Context, e Engine, id string) ([]byte, error) {
	rc, err := e.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&limited{&stdout, 64 << 10}, &limited{&stderr, 4096}, io.LimitReader(rc, 1<<20)); err != nil {
		return nil, err
	}
	if stdout.Len() == 0 {
		return stderr.Bytes(), nil
	}
	return stdout.Bytes(), nil
}

// stopFirst is b1's signal for a shimless old side: each old teamd
// stopped warm by PID, in its wave of cut and right after its periodic
// PDU (as a shim stops its teamd), and its snapshot written once it is
// gone. lags limits it to those LAGs (recover's), all if nil.
func (r *run) stopFirst(ctx context.Context, p *plan, cut *proto.Cutover, lags []string) {
	if lags == nil {
		lags = p.lagNames()
	}
	r.progress("cutover written (deadline %v); stopping the %d old teamds of %s warm, by PID: no way back now", r.s.opts.Deadline, len(lags), r.s.opts.Backup)
	tl := r.newTally("done with its old teamd", len(lags))
	var mu sync.Mutex
	// Every LAG at once: each waits for its wave and its teamd's PDU, so
	// that a wave's handoffs are what run together, as with shims.
	eachLAG(lags, len(lags), func(lag string) {
		r.awaitRound(ctx, p, cut, lag)
		way, err := r.stopOldTeamd(ctx, p, lag)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			// Not r.warn: this runs beside other goroutines of the
			// flow, which holds mu for the report.
			r.rep.Warnings = append(r.rep.Warnings, err.Error())
			r.s.opts.Logger.Warn(err.Error(), "stage", r.stage)
		}
		tl.add(lag, way)
	})
}

// awaitRound is what an old shim does before it stops its teamd
// (teamdshim's awaitRound), done from the host: it waits for the LAG's
// wave of the cutover, then, up to a period more, until the old teamd has
// sent its next periodic LACPDU on every member, watched from inside its
// network namespace, so that the handoff starts right after it and the
// peer's gap is the handoff's time, not a period plus it. A slow-rate LAG,
// or one whose members cannot be watched, does not wait.
func (r *run) awaitRound(ctx context.Context, p *plan, cut *proto.Cutover, lag string) {
	t, l := p.first.teamds[lag], p.lag(lag)
	if t == nil || l == nil || l.state == nil || !l.state.PartnerAsksFast() {
		return
	}
	wave := cut.Wave(lag)
	netns := fmt.Sprintf("/proc/%d/ns/net", t.PID)
	err := lacpsock.AwaitTurn(ctx, wave, fastPeriod, l.state.PortNames(), func(m string) (*lacpsock.Conn, error) { return lacpsock.SentIn(netns, m) })
	if err != nil && ctx.Err() == nil {
		r.s.opts.Logger.Warn("stopping the old teamd without waiting for its next PDU", "lag", lag, "err", err)
	}
}

// stopOldTeamd is one LAG's part of stopFirst: what its shim would do on
// SIGUSR1, done from the host (shimless.HandOver), and the snapshot
// published. It says which way it went (for the tally); the error says
// what went wrong, and the LAG is then taken over by its standby on the
// evidence rule.
func (r *run) stopOldTeamd(ctx context.Context, p *plan, lag string) (way string, _ error) {
	f, l := p.first, p.lag(lag)
	t := f.teamds[lag]
	if t == nil || l == nil {
		return "had no teamd", nil
	}
	dumpDir := ""
	if t.DumpDir != "" {
		dumpDir, _ = f.root.Path(t.DumpDir) // none readable: a snapshot without dump files
	}
	snap, how, err := t.HandOver(ctx, shimless.HandOver{
		Socket: filepath.Join(f.runDir, lag+".sock"), DumpDir: dumpDir,
		Epoch: firstEpoch, Digest: l.active.ConfigDigest, Teamd: l.active.Teamd,
		Writer:      proto.Process{Hostname: hostname(), PID: os.Getpid()},
		StopTimeout: teamdshim.DefaultStopTimeout, Fallback: l.state, Log: r.s.opts.Logger, // the bound a shim gives its teamd
	})
	switch {
	case err != nil:
		return "not stopped", fmt.Errorf("%s: the old teamd could not be stopped (%w): no snapshot, its standby takes over once it is silent", lag, err)
	case snap == nil:
		return "had exited", nil // no speaker, no snapshot: the standby finds it silent
	}
	if _, err := r.dir.Publish(snap); err != nil {
		return "no snapshot", fmt.Errorf("%s: the old teamd %s, but its snapshot: %w; its standby takes over once it finds the old teamd silent", lag, how, err)
	}
	return "stopped warm", nil
}

// serving lists the LAGs whose old teamd still runs.
func (f *firstPlan) serving() []string {
	var out []string
	for lag, t := range f.teamds {
		if t.Alive() {
			out = append(out, lag)
		}
	}
	teamd.SortNames(out)
	return out
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
