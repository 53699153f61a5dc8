package dut

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// Version is a teamd image to build: its tag's suffix, and environment
// added to it (e.g. TEAMDSIM_FAULT=deaf).
type Version struct {
	Name string
	Env  []string
	// SONiC builds a SONiC-shaped image (BuildSONiCImage): teamds
	// without teamd-shim, the old side of a first upgrade.
	SONiC bool
}

// BoxOptions say what box to build.
type BoxOptions struct {
	LAGs, Members int
	Versions      []Version // the first one also runs the holder
	Bins          Binaries
	Dir           string // scratch directory: the bed's, warmboot, configs
}

// Box is a SONiC-like switch for the supervisor: a test bed whose DUT
// namespace is a holder container's, teamd images, the warmboot directory
// the teamd containers share, and their configs.
type Box struct {
	Lab    *Lab
	Bed    *testbed.Bed
	Holder *Holder
	// Name is the teamd container's name, unique to the box (not "teamd":
	// a box must not touch a real one).
	Name     string
	Warmboot string            // host side of /var/warmboot
	Dir      string            // the record directory on the host
	Configs  string            // host side of /etc/teamd
	Images   map[string]string // version -> image reference
	sonic    map[string]bool   // the versions that are SONiC-shaped
}

// NewBox builds a box. On error what was built is removed.
func NewBox(ctx context.Context, o BoxOptions) (_ *Box, err error) {
	if len(o.Versions) == 0 {
		return nil, errors.New("dut: no image version")
	}
	lab, err := New(ctx)
	if err != nil {
		return nil, err
	}
	b := &Box{Lab: lab, Name: "teamd-" + lab.ID, Images: map[string]string{}, sonic: map[string]bool{}}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	for _, v := range o.Versions {
		ref := fmt.Sprintf("teamdwarm-test/teamd:%s-%s", lab.ID, v.Name)
		build := lab.BuildImage
		if v.SONiC {
			build = lab.BuildSONiCImage
		}
		if _, err := build(ctx, ref, v.Name, o.Bins, v.Env...); err != nil {
			return nil, err
		}
		b.Images[v.Name], b.sonic[v.Name] = ref, v.SONiC
	}
	if b.Holder, err = lab.StartHolder(ctx, b.Images[o.Versions[0].Name]); err != nil {
		return nil, err
	}
	bedDir := filepath.Join(o.Dir, "bed")
	if err := os.MkdirAll(bedDir, 0o755); err != nil {
		return nil, err
	}
	if b.Bed, err = testbed.New(ctx, testbed.Topology{LAGs: o.LAGs, Members: o.Members, DUTPid: b.Holder.Pid}, bedDir); err != nil {
		return nil, err
	}
	b.Warmboot, b.Configs = filepath.Join(o.Dir, "warmboot"), filepath.Join(o.Dir, "teamd")
	b.Dir = filepath.Join(b.Warmboot, "teamdwarm")
	if _, err := statefile.OpenDir(b.Dir); err != nil {
		return nil, err
	}
	if err := WriteConfigs(b.Configs, b.Bed.LAGs); err != nil {
		return nil, err
	}
	return b, nil
}

// RunTeamd starts the box's teamd container of version v (restart policy
// unless-stopped, as a supervisor must cope with) and waits until every
// LAG is active at epoch 1 (a SONiC-shaped version writes no records) and
// negotiated with the peer.
func (b *Box) RunTeamd(ctx context.Context, v string) (string, error) {
	id, err := b.Lab.RunTeamd(ctx, Teamd{Name: b.Name, Image: b.Images[v], Holder: b.Holder,
		Warmboot: b.Warmboot, Configs: b.Configs, RestartPolicy: "unless-stopped"})
	if err != nil {
		return id, err
	}
	// A container's start grows with its LAGs (on this bed each teamd is
	// a process started through the storage driver).
	n := time.Duration(len(b.Bed.LAGs))
	if b.sonic[v] {
		// No record tells: its teamds are asked, as teamd-warm asks them.
		// The peer's view alone may still be the previous container's.
		if err := b.awaitSONiC(ctx, id, 30*time.Second+n*500*time.Millisecond); err != nil {
			return id, fmt.Errorf("%w; the container's log ends:\n%s", err, b.Lab.LogTail(ctx, id, 30))
		}
		return id, b.Bed.WaitNegotiated(ctx, 20*time.Second+n*250*time.Millisecond)
	}
	if err := AwaitActive(ctx, b.Dir, b.Bed.LAGs, 1, 30*time.Second+n*500*time.Millisecond); err != nil {
		return id, fmt.Errorf("%w; the container's log ends:\n%s", err, b.Lab.LogTail(ctx, id, 30))
	}
	return id, b.Bed.WaitNegotiated(ctx, 20*time.Second+n*250*time.Millisecond)
}

// awaitSONiC waits until every LAG's teamd in the SONiC-shaped container
// id runs and says every member is current and in sync with the partner
// (its StateDump, through the container's root). There is no event for
// it: it asks every 100 ms.
func (b *Box) awaitSONiC(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := b.Lab.Docker.ContainerInspect(ctx, id)
	if err != nil {
		return err
	}
	root, err := shimless.OpenRoot(c.State.Pid)
	if err != nil {
		return err
	}
	defer root.Close()
	for {
		last := sonicReady(ctx, c.State.Pid, root, b.Bed.LAGs)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the SONiC-shaped container's teamds not ready within %v: %w", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sonicReady(ctx context.Context, init int, root *shimless.Root, lags []testbed.LAG) error {
	found, err := shimless.Find(init)
	if err != nil {
		return err
	}
	run, err := root.Path(teamd.DefaultRunDir)
	if err != nil {
		return err
	}
	byLAG := map[string]*shimless.Teamd{}
	for i := range found.Teamds {
		byLAG[found.Teamds[i].LAG] = &found.Teamds[i]
	}
	for _, l := range lags {
		t := byLAG[l.Name]
		if t == nil {
			return fmt.Errorf("no teamd runs %s", l.Name)
		}
		st, err := t.StateDump(ctx, filepath.Join(run, l.Name+".sock"))
		if err != nil {
			return err
		}
		if len(st.Ports) != len(l.Members) {
			return fmt.Errorf("%s: %d ports", l.Name, len(st.Ports))
		}
		for name, p := range st.Ports {
			if p.Runner.State != "current" || !proto.State(p.Runner.ActorLACPDUInfo.State).Has(proto.InService) {
				return fmt.Errorf("%s %s: %s, actor state %#x", l.Name, name, p.Runner.State, p.Runner.ActorLACPDUInfo.State)
			}
		}
	}
	return nil
}

// AwaitActive waits until every LAG has a .active record of epoch.
func AwaitActive(ctx context.Context, dir string, lags []testbed.LAG, epoch uint64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	events, err := statefile.WatchOnly(ctx, dir, func(_ string, k proto.Kind) bool { return k == proto.KindActive })
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, l := range lags {
		want[l.Name] = true
	}
	for ev := range events {
		if ev.Record != nil && want[ev.LAG] && ev.Record.RecordEpoch() == epoch {
			delete(want, ev.LAG)
			if len(want) == 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("%d LAGs have no .active of epoch %d after %v", len(want), epoch, timeout)
}

// Close removes the bed, then every container and image of the lab.
func (b *Box) Close() error {
	var errs []error
	if b.Bed != nil {
		errs = append(errs, b.Bed.Close())
	}
	errs = append(errs, b.Lab.Close())
	return errors.Join(errs...)
}
