package teamdsim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// teammgrdConfig is the JSON SONiC's teammgrd passes with -c (reference §6).
const teammgrdConfig = `{"device":"PortChannel1","hwaddr":"02:54:44:00:00:01","runner":{"active":true,"name":"lacp","min_ports":1,"fast_rate":true}}`

func TestParseCmdLineTeammgrd(t *testing.T) {
	// teammgrd's exact call: teamd -w -o -t <LAG> -c '<json>' -L /var/warmboot/teamd/ -g -d
	args := []string{"-w", "-o", "-t", "PortChannel1", "-c", teammgrdConfig, "-L", "/var/warmboot/teamd/", "-g", "-d"}
	cl, err := ParseCmdLine(args, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := CmdLine{Team: "PortChannel1", ConfigJSON: teammgrdConfig, DumpDir: "/var/warmboot/teamd/", Warm: true,
		TakeOver: true, Daemonize: true, Debug: 1, TakeoverSignal: teamd.TakeoverSignal, Profile: teamd.ProfileHLD}
	if !reflect.DeepEqual(cl, want) {
		t.Fatalf("got %+v\nwant %+v", cl, want)
	}
	// Clustered and attached forms, as getopt reads them.
	cl, err = ParseCmdLine([]string{"-gdr", "-tPortChannel2", "-c" + teammgrdConfig}, func(k string) string {
		return map[string]string{"TEAMDSIM_TAKEOVER_SIGNAL": "SIGRTMIN+1"}[k]
	})
	if err != nil || cl.Team != "PortChannel2" || !cl.Recreate || cl.Debug != 1 || cl.TakeoverSignal != 35 {
		t.Fatalf("clustered: %+v, %v", cl, err)
	}
	for _, bad := range [][]string{
		{"-t"}, {"-x", "-c", "{}"}, {"-t", "a"}, {"-c", "{}", "stray"}, {"-c", "{}", "--takeover-signal=SIGRTMIN"},
	} {
		if _, err := ParseCmdLine(bad, func(string) string { return "" }); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(teammgrdConfig), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Device != "PortChannel1" || !c.Runner.Active || !c.Runner.FastRate || c.Runner.SysPrio != 65535 || c.Runner.MinPorts != 1 {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{`{`, `{"device":"x","hwaddr":"02:00:00:00:00:01","runner":{"name":"activebackup"}}`,
		`{"device":"x","runner":{"name":"lacp"}}`} {
		if _, err := ParseConfig([]byte(bad), ""); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func newLag(t *testing.T) (*lag, *port, time.Time) {
	t.Helper()
	c, err := ParseConfig([]byte(teammgrdConfig), "")
	if err != nil {
		t.Fatal(err)
	}
	l := &lag{cfg: c, ports: map[string]*port{}}
	p := &port{name: "Ethernet40", ifindex: 7, number: 41, mac: proto.MAC{2, 0, 0, 0, 0, 41}, cfg: PortConfig{LACPKey: 1, LACPPrio: 255}}
	now := time.Unix(1000, 0)
	l.add(p, now)
	return l, p, now
}

func partnerPDU(about proto.Info) proto.LACPDU {
	return proto.LACPDU{Dst: proto.SlowProtocolsMAC, Src: proto.MAC{2, 0xee, 0, 0, 0, 1},
		Actor: proto.Info{SystemPriority: 65535, System: proto.MAC{2, 0xee, 0, 0, 0, 0}, Key: 1, PortPriority: 65535, Port: 1,
			State: proto.StateActivity | proto.StateTimeout | proto.StateAggregation | proto.InService},
		Partner: about}
}

// The runner follows teamd's rules: identity, Sync/Collecting/Distributing,
// stale-view replies, the receive timeout and the rate limit.
func TestRunner(t *testing.T) {
	l, p, now := newLag(t)
	out := l.due(now)
	if len(out) != 1 {
		t.Fatalf("a new port sends at once; got %d frames", len(out))
	}
	a := out[0].pdu.Actor
	wantID := proto.Info{SystemPriority: 65535, System: l.cfg.HWAddr, Key: 1, PortPriority: 255, Port: 41}
	if !a.SameIdentity(wantID) {
		t.Fatalf("identity %v, want %v", a, wantID)
	}
	if a.State.Has(proto.StateSync) || !a.State.Has(proto.StateExpired) {
		t.Fatalf("before the partner speaks: %v", a.State)
	}
	b, _ := out[0].pdu.MarshalBinary()
	if len(b) != proto.FrameLen || !reflect.DeepEqual(proto.MAC(b[6:12]), p.mac) {
		t.Fatalf("frame: %d bytes from %x", len(b), b[6:12])
	}

	// The partner speaks, with a stale view of us: reply at once, in sync.
	pdu := partnerPDU(proto.Info{})
	frame, _ := pdu.MarshalBinary()
	now = now.Add(100 * time.Millisecond)
	l.receive(p, pdu, frame, now)
	if p.state != stateCurrent || !p.selected || p.aggID != 7 { // the lead port's ifindex
		t.Fatalf("after a partner PDU: state %s selected %v agg %d", p.state, p.selected, p.aggID)
	}
	out = l.due(now)
	if len(out) != 1 || !out[0].pdu.Actor.State.Has(proto.InService) || out[0].pdu.Partner != pdu.Actor {
		t.Fatalf("stale-view reply: %+v", out)
	}

	// Rate limit: never more than 3 PDUs a second, however often asked.
	sent := 2 // the first PDU and the reply, within the same second
	for range 10 {
		p.ntt = true
		sent += len(l.due(now))
	}
	if sent != maxTxPerSec {
		t.Fatalf("sent %d within a second, want %d", sent, maxTxPerSec)
	}

	// Period follows the partner's timeout bit: 1 s for a fast partner.
	if period(p) != time.Second {
		t.Fatalf("period %v", period(p))
	}

	// Receive timeout: 3 s -> expired (not in sync), then defaulted.
	l.tick(now.Add(2900 * time.Millisecond))
	if p.state != stateCurrent {
		t.Fatalf("expired early: %s", p.state)
	}
	l.tick(now.Add(3 * time.Second))
	if p.state != stateExpired || l.actor(p).State.Has(proto.StateCollecting) {
		t.Fatalf("after 3s: %s, actor %v", p.state, l.actor(p).State)
	}
	l.tick(now.Add(6 * time.Second))
	if p.state != stateDefaulted || p.selected {
		t.Fatalf("after 6s: %s selected %v", p.state, p.selected)
	}
}

// The run loop sleeps until the runner's next deadline: the next PDU, a
// PDU the rate limit holds back, or the receive timeout.
func TestRunnerNextDeadline(t *testing.T) {
	l, p, now := newLag(t)
	pdu := partnerPDU(proto.Info{})
	frame, _ := pdu.MarshalBinary()
	l.receive(p, pdu, frame, now)
	if got := l.next(now, true); !got.Equal(now) {
		t.Fatalf("a PDU to send now: next %v after now", got.Sub(now))
	}
	l.due(now)
	if got, want := l.next(now, true), now.Add(time.Second); !got.Equal(want) {
		t.Fatalf("after a send: next in %v, want the 1 s period", got.Sub(now))
	}
	if got, want := l.next(now, false), now.Add(3*time.Second); !got.Equal(want) {
		t.Fatalf("silent: next in %v, want the 3 s receive timeout", got.Sub(now))
	}
	for i := range maxTxPerSec - 1 {
		p.ntt = true
		l.due(now.Add(time.Duration(i+1) * 10 * time.Millisecond))
	}
	p.ntt = true
	if got, want := l.next(now.Add(50*time.Millisecond), true), now.Add(time.Second); !got.Equal(want) {
		t.Fatalf("rate-limited: next in %v, want when the first send leaves the window", got.Sub(now))
	}
	l.tick(now.Add(3 * time.Second))
	l.tick(now.Add(6 * time.Second))
	p.ntt, p.nextTx, p.state = false, time.Time{}, stateDisabled
	if got := l.next(now, true); !got.IsZero() {
		t.Fatalf("a disabled port has no deadline: next %v", got)
	}
}

// StateDump carries exactly the keys of reference §4.
func TestStateDumpShape(t *testing.T) {
	l, p, now := newLag(t)
	pdu := partnerPDU(proto.Info{})
	frame, _ := pdu.MarshalBinary()
	l.receive(p, pdu, frame, now)
	d := &Daemon{opts: Options{Config: l.cfg, PIDFile: "/var/run/teamd/PortChannel1.pid"}, lag: *l}
	b, err := d.stateJSON()
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		t.Fatal(err)
	}
	var got []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			got = append(got, prefix)
			return
		}
		for k, c := range m {
			walk(prefix+"."+k, c)
		}
	}
	walk("", tree)
	sort.Strings(got)
	want := strings.Fields(`
.ports.Ethernet40.ifinfo.dev_addr .ports.Ethernet40.ifinfo.dev_addr_len .ports.Ethernet40.ifinfo.ifindex .ports.Ethernet40.ifinfo.ifname
.ports.Ethernet40.link.duplex .ports.Ethernet40.link.speed .ports.Ethernet40.link.up
.ports.Ethernet40.link_watches.list.link_watch_0.delay_down .ports.Ethernet40.link_watches.list.link_watch_0.delay_up
.ports.Ethernet40.link_watches.list.link_watch_0.down_count .ports.Ethernet40.link_watches.list.link_watch_0.name
.ports.Ethernet40.link_watches.list.link_watch_0.up .ports.Ethernet40.link_watches.up
.ports.Ethernet40.runner.actor_lacpdu_info.key .ports.Ethernet40.runner.actor_lacpdu_info.port .ports.Ethernet40.runner.actor_lacpdu_info.port_priority
.ports.Ethernet40.runner.actor_lacpdu_info.state .ports.Ethernet40.runner.actor_lacpdu_info.system .ports.Ethernet40.runner.actor_lacpdu_info.system_priority
.ports.Ethernet40.runner.aggregator.id .ports.Ethernet40.runner.aggregator.selected .ports.Ethernet40.runner.key
.ports.Ethernet40.runner.partner_lacpdu_info.key .ports.Ethernet40.runner.partner_lacpdu_info.port .ports.Ethernet40.runner.partner_lacpdu_info.port_priority
.ports.Ethernet40.runner.partner_lacpdu_info.state .ports.Ethernet40.runner.partner_lacpdu_info.system .ports.Ethernet40.runner.partner_lacpdu_info.system_priority
.ports.Ethernet40.runner.prio .ports.Ethernet40.runner.selected .ports.Ethernet40.runner.state
.runner.active .runner.fast_rate .runner.select_policy .runner.sys_prio
.setup.daemonized .setup.dbus_enabled .setup.debug_level .setup.kernel_team_mode_name .setup.pid .setup.pid_file .setup.runner_name .setup.zmq_enabled
.team_device.ifinfo.dev_addr .team_device.ifinfo.dev_addr_len .team_device.ifinfo.ifindex .team_device.ifinfo.ifname`)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keys differ\n got %v\nwant %v", got, want)
	}
	// Sorted keys, 4-space indent, as teamd's jansson output.
	if !strings.HasPrefix(string(b), "{\n    \"ports\": {") {
		t.Fatalf("layout: %.40q", b)
	}
	var st teamd.State
	if err := json.Unmarshal(b, &st); err != nil || st.Ports["Ethernet40"].Runner.State != "current" {
		t.Fatalf("client view: %+v, %v", st.Ports["Ethernet40"].Runner, err)
	}
}

// SIGUSR1's dump files have SONiC's formats: 124-byte per-port frames and
// the per-LAG text file.
func TestWriteDumps(t *testing.T) {
	l, p, now := newLag(t)
	pdu := partnerPDU(proto.Info{})
	frame, _ := pdu.MarshalBinary()
	l.receive(p, pdu, frame, now)
	dir := t.TempDir()
	d := &Daemon{opts: Options{Config: l.cfg, DumpDir: dir}, lag: *l}
	if err := d.writeDumps(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "Ethernet40"))
	if !reflect.DeepEqual(b, frame) {
		t.Fatalf("port dump is not the received frame: %x", b)
	}
	lagDump, _ := os.ReadFile(filepath.Join(dir, "PortChannel1"))
	if string(lagDump) != "1\n1\nEthernet40\n1\n" {
		t.Fatalf("LAG dump %q", lagDump)
	}
}
