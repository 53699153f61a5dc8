package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/google/go-cmp/cmp"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
)

// oldImage is what docker import made of a teamd image: entrypoint, an
// env and a label of its own.
func oldImage() image.InspectResponse {
	return image.InspectResponse{ID: "sha256:old", Config: &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		Entrypoint: []string{"/usr/bin/teamd-shim", "init"},
		Env:        []string{"PATH=/usr/bin", "IMAGE_VERSION=v1"},
		Labels:     map[string]string{"version": "v1"},
	}}}
}

// oldContainer is the old container as inspect shows it: the image's
// defaults merged with what the operator gave.
func oldContainer(mut func(*container.Config, *container.HostConfig)) container.InspectResponse {
	cfg := &container.Config{
		Hostname: "sonic",
		//lint:ignore SA1019 engines before API 1.44 (SONiC's among them) report it here; it must not be copied
		MacAddress: "02:42:ac:11:00:02",
		Image:      "docker-teamd:v1",
		Entrypoint: []string{"/usr/bin/teamd-shim", "init"},
		Env: []string{"PATH=/usr/bin", "IMAGE_VERSION=v1", "NAMESPACE_ID=0",
			"TEAMDWARM_ROLE=standby", "TEAMDWARM_EPOCH=4"},
		Labels:     map[string]string{"version": "v1", "owner": "swss"},
		StopSignal: "SIGTERM",
	}
	hc := &container.HostConfig{
		NetworkMode:   "host",
		Binds:         []string{"/host/warmboot:/var/warmboot"},
		CapAdd:        []string{"NET_ADMIN"},
		RestartPolicy: container.RestartPolicy{Name: "unless-stopped"},
	}
	if mut != nil {
		mut(cfg, hc)
	}
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "0123456789abcdef", Name: "/teamd", HostConfig: hc}, Config: cfg}
}

func TestNewContainerSettings(t *testing.T) {
	wantEnv := []string{"NAMESPACE_ID=0", "TEAMDWARM_ROLE=standby", "TEAMDWARM_EPOCH=5"}
	for _, tc := range []struct {
		name           string
		mut            func(*container.Config, *container.HostConfig)
		wantEntrypoint []string
		wantCmd        []string
	}{
		{name: "image defaults are left to the new image"},
		{name: "a command of the operator's is kept",
			mut: func(c *container.Config, _ *container.HostConfig) {
				c.Cmd = []string{"--config-dir", "/etc/sonic/teamd"}
			},
			wantCmd: []string{"--config-dir", "/etc/sonic/teamd"}},
		{name: "an entrypoint of the operator's is kept with its command",
			mut: func(c *container.Config, _ *container.HostConfig) {
				c.Entrypoint, c.Cmd = []string{"/usr/bin/supervisord"}, []string{"-n"}
			},
			wantEntrypoint: []string{"/usr/bin/supervisord"}, wantCmd: []string{"-n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, hc, nc := newContainerSettings(oldContainer(tc.mut), oldImage(), "docker-teamd:v2", 5)
			want := &container.Config{
				Image: "docker-teamd:v2", Env: wantEnv, Labels: map[string]string{"owner": "swss"},
				StopSignal: "SIGTERM", Entrypoint: tc.wantEntrypoint, Cmd: tc.wantCmd,
			}
			if diff := cmp.Diff(want, cfg); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(oldContainer(tc.mut).HostConfig, hc); diff != "" {
				t.Errorf("host config (-want +got):\n%s", diff)
			}
			if nc != nil {
				t.Errorf("networking config %+v for host networking", nc)
			}
		})
	}
}

func TestNewContainerSettingsUserNetwork(t *testing.T) {
	old := oldContainer(func(_ *container.Config, hc *container.HostConfig) { hc.NetworkMode = "mgmt" })
	old.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"mgmt": {
		NetworkID: "n1", IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.0.0.5"},
		Aliases: []string{"teamd", "0123456789ab"}, MacAddress: "02:42:0a:00:00:05", IPAddress: "10.0.0.5",
	}}}
	_, _, nc := newContainerSettings(old, oldImage(), "docker-teamd:v2", 2)
	want := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"mgmt": {
		NetworkID: "n1", IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: "10.0.0.5"}, Aliases: []string{"teamd"},
	}}}
	if diff := cmp.Diff(want, nc); diff != "" {
		t.Errorf("networking config (-want +got):\n%s", diff)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	if h := lockHolder(dir); h != "" {
		t.Errorf("holder %q of a lock never taken", h)
	}
	unlock, err := lock(dir, "teamd-warm upgrade of teamd")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("pid %d (teamd-warm upgrade of teamd)", os.Getpid())
	if h := lockHolder(dir); h != want {
		t.Errorf("holder %q, want %q", h, want)
	}
	_, err = lock(dir, "second")
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), want) {
		t.Errorf("second lock: %v: want ErrBusy naming %q", err, want)
	}
	unlock()
	if h := lockHolder(dir); h != "" {
		t.Errorf("holder %q after unlock", h)
	}
	unlock, err = lock(dir, "third")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock()
}

func TestOpenDir(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		want      error
	}{
		{"missing", filepath.Join(t.TempDir(), "none"), os.ErrNotExist},
		{"world-writable", open, statefile.ErrUnsafe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := openDir(tc.dir); !errors.Is(err, tc.want) {
				t.Errorf("openDir: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := openDir(t.TempDir()); err != nil {
		t.Errorf("a private directory: %v", err)
	}
}

func TestReadActives(t *testing.T) {
	clock := prototest.DefaultClock
	started := clock.Wall.Add(-time.Minute).Format(time.RFC3339Nano)
	for _, tc := range []struct {
		name    string
		records []proto.Record
		raw     map[string]string // file name -> bytes
		want    string            // error text, or "" for a plan
	}{
		{name: "one epoch", records: []proto.Record{prototest.Active("PortChannel2", 3, 2, clock), prototest.Active("PortChannel1", 3, 2, clock),
			prototest.Standby("PortChannel1", 4, 2, clock)}},
		{name: "none"}, // a first upgrade's (first.go)
		{name: "two epochs", records: []proto.Record{prototest.Active("PortChannel1", 3, 2, clock), prototest.Active("PortChannel2", 4, 2, clock)},
			want: "not of one epoch (epoch 3: PortChannel1; epoch 4: PortChannel2)"},
		{name: "stale", records: []proto.Record{prototest.Active("PortChannel1", 3, 2, prototest.Clock{Mono: clock.Mono, Wall: clock.Wall.Add(-time.Hour)})},
			want: "PortChannel1.active is from 2026-11-21T09:00:00Z, before container teamd started"},
		{name: "corrupt", raw: map[string]string{"PortChannel1.active": "TDWR garbage"}, want: "PortChannel1.active: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := statefile.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range tc.records {
				if _, err := d.Write(rec); err != nil {
					t.Fatal(err)
				}
			}
			for name, b := range tc.raw {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := New(nil, Options{Dir: dir, Image: "x"})
			if err != nil {
				t.Fatal(err)
			}
			r := s.newRun(OpUpgrade)
			p := &plan{old: oldContainer(nil)}
			p.old.State = &container.State{Running: true, StartedAt: started}
			err = r.readActives(p)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.records) == 0 {
				if len(p.lags) != 0 {
					t.Errorf("LAGs %v from no records", p.lagNames())
				}
				return
			}
			if p.epoch != 3 || strings.Join(p.lagNames(), " ") != "PortChannel1 PortChannel2" {
				t.Errorf("epoch %d, LAGs %v: want 3, PortChannel1 PortChannel2", p.epoch, p.lagNames())
			}
		})
	}
}

func TestMillisJSON(t *testing.T) {
	in := LAGReport{LAG: "PortChannel1", Budget: Millis(3 * time.Second), Takeover: Millis(31250 * time.Microsecond)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"budget_ms":3000.000`) || !strings.Contains(string(b), `"takeover_ms":31.250`) {
		t.Errorf("JSON %s: want milliseconds", b)
	}
	var out LAGReport
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestErrorResults(t *testing.T) {
	cause := errors.New("boom")
	for _, tc := range []struct {
		err  error
		want Result
		text string
	}{
		{nil, ResultOK, ""},
		{&Error{Stage: StagePreflight, Result: ResultRefused, Err: cause}, ResultRefused, "refused: boom (nothing was changed)"},
		{&Error{Stage: StageReady, Result: ResultRolledBack, Err: cause}, ResultRolledBack, "a3: boom; rolled back: the old container serves every LAG"},
		{fmt.Errorf("wrapped: %w", &Error{Stage: StageTakeover, Result: ResultFailed, Err: cause}), ResultFailed, "wrapped: b2: boom"},
		{cause, ResultFailed, "boom"},
	} {
		if got := ResultOf(tc.err); got != tc.want {
			t.Errorf("ResultOf(%v) = %s, want %s", tc.err, got, tc.want)
		}
		if tc.err != nil && tc.err.Error() != tc.text {
			t.Errorf("%q, want %q", tc.err.Error(), tc.text)
		}
		if tc.err != nil && !errors.Is(tc.err, cause) {
			t.Errorf("%v does not wrap its cause", tc.err)
		}
	}
}

func TestHandedOverGaps(t *testing.T) {
	ms := time.Millisecond
	cut := &proto.Cutover{StartedMono: int64(1000 * ms)}
	snap := &proto.Snapshot{Members: []proto.Member{{Name: "Ethernet0", LastTxMono: int64(990 * ms)}, {Name: "Ethernet4"}}}
	active := func(path proto.Path, confirmed time.Duration) *proto.Active {
		return &proto.Active{Path: path, Timings: proto.Timings{Confirmed: int64(confirmed)}}
	}
	tests := []struct {
		name     string
		a        *proto.Active
		snap     *proto.Snapshot
		result   string
		takeover time.Duration
		gaps     []string // per member: gap and where from
	}{
		{"no takeover", nil, snap, LAGNoTakeover, 0, []string{"0s ", "0s "}},
		{"unconfirmed", active(proto.PathSnapshot, 0), snap, LAGUnconfirmed, 0, []string{"0s ", "0s "}},
		{"snapshot", active(proto.PathSnapshot, 1030*ms), snap, LAGOK, 30 * ms, []string{"40ms last-pdu", "30ms cutover"}},
		{"deadline", active(proto.PathDeadline, 2200*ms), snap, LAGOK, 1200 * ms, []string{"1.2s cutover", "1.2s cutover"}},
		{"snapshot path, no snapshot", active(proto.PathSnapshot, 1030*ms), nil, LAGOK, 30 * ms, []string{"30ms cutover", "30ms cutover"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := LAGReport{LAG: "PortChannel1", Members: []MemberReport{{Name: "Ethernet0"}, {Name: "Ethernet4"}}}
			lr.handedOver(cut, tt.a, tt.snap)
			var gaps []string
			for _, m := range lr.Members {
				gaps = append(gaps, time.Duration(m.Gap).String()+" "+m.GapFrom)
			}
			if lr.Result != tt.result || time.Duration(lr.Takeover) != tt.takeover || !slices.Equal(gaps, tt.gaps) {
				t.Errorf("result %s takeover %v gaps %q; want %s %v %q", lr.Result, time.Duration(lr.Takeover), gaps, tt.result, tt.takeover, tt.gaps)
			}
		})
	}
}

func TestKernelVerdict(t *testing.T) {
	k := func(mod func(*proto.KernelLAG)) *proto.KernelLAG {
		l := &proto.KernelLAG{Name: "PortChannel1", Up: true, Carrier: true,
			Ports: []proto.KernelPort{{Name: "Ethernet0", Enabled: true}, {Name: "Ethernet4", Enabled: true}}}
		if mod != nil {
			mod(l)
		}
		return l
	}
	tests := []struct {
		name string
		snap *proto.Snapshot
		a    *proto.Active
		want string
	}{
		{"unchanged", &proto.Snapshot{Kernel: k(nil)}, &proto.Active{Path: proto.PathSnapshot, KernelBefore: k(nil), Kernel: k(nil)}, "unchanged"},
		{"a port disabled by the takeover", &proto.Snapshot{Kernel: k(nil)},
			&proto.Active{Path: proto.PathSnapshot, KernelBefore: k(nil), Kernel: k(func(l *proto.KernelLAG) { l.Ports[1].Enabled = false })},
			"changed: Ethernet4 enabled: on -> off"},
		{"changed between the old teamd's stop and the takeover", &proto.Snapshot{Kernel: k(func(l *proto.KernelLAG) { l.Carrier = false })},
			&proto.Active{Path: proto.PathSnapshot, KernelBefore: k(nil), Kernel: k(nil)}, "changed: PortChannel1 carrier: off -> on"},
		{"deadline: no snapshot to compare", nil, &proto.Active{Path: proto.PathDeadline, KernelBefore: k(nil), Kernel: k(nil)}, "unchanged"},
		{"no team family", nil, &proto.Active{Path: proto.PathDeadline, KernelBefore: &proto.KernelLAG{Err: "no team family"}, Kernel: &proto.KernelLAG{Err: "no team family"}},
			"unknown (no team family)"},
		{"an earlier shim", &proto.Snapshot{}, &proto.Active{Path: proto.PathSnapshot}, "unknown (not recorded)"},
	}
	for _, tt := range tests {
		if got := kernelVerdict(tt.snap, tt.a); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A container without records whose processes cannot be told from the
// host's (it shares teamd-warm's PID namespace) is refused, not searched
// for teamds: the host's own would be taken for the container's.
func TestFindShimlessRefusesTheHostsPIDNamespace(t *testing.T) {
	s, err := New(nil, Options{Dir: t.TempDir(), Image: "x"})
	if err != nil {
		t.Fatal(err)
	}
	p := &plan{old: oldContainer(nil)}
	p.old.State = &container.State{Running: true, Pid: os.Getpid()}
	f, err := s.newRun(OpUpgrade).findShimless(p)
	if err == nil || !strings.Contains(err.Error(), "shares teamd-warm's PID namespace") {
		f.close()
		t.Fatalf("error %v, want the PID namespace refused", err)
	}
}
