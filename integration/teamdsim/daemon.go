package teamdsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// Options are the stand-in's settings, mostly from teamd's command line.
type Options struct {
	Config     Config
	ConfigJSON string // as given, for ConfigDump
	DumpDir    string // -L: where SIGUSR1 writes and -w reads the dump files
	// Passive is -P, teamdwarm's passive start: learn, transmit nothing
	// until the takeover signal. Warm is -w, SONiC's warm start: fold in
	// the -L dump files, transmit at once.
	Passive    bool
	Warm       bool
	Profile    teamd.Profile // what this stand-in plays; ProfileHLD if ""
	RunDir     string        // pid file and control socket directory
	PIDFile    string        // -p; default <RunDir>/<device>.pid
	Daemonized bool
	Debug      int
	// TakeoverSignal ends the passive standby (default
	// teamd.TakeoverSignal).
	TakeoverSignal syscall.Signal
	Logger         *slog.Logger
	Fault          Fault
	// Ready is called once the control socket listens and the ports are
	// open (the daemonizing parent's cue).
	Ready func()
}

// Fault makes the stand-in misbehave on purpose, for tests.
type Fault string

// The faults.
const (
	FaultNone          Fault = ""
	FaultIgnoreSIGUSR1 Fault = "ignore-sigusr1" // keeps transmitting on SIGUSR1, like a teamd without SONiC's patch
	FaultDeaf          Fault = "deaf"           // drops every received frame: never hears the partner
)

// Daemon is one running stand-in. One goroutine (Run) owns all LACP state;
// socket readers and the control socket talk to it over channels.
type Daemon struct {
	opts Options
	log  *slog.Logger
	lag  lag

	silent bool // -P standby: learn, never transmit

	conns map[string]*lacpsock.Conn // owned by Run
	rx    chan rxFrame
	ctl   chan ctlRequest
	start time.Time
}

type rxFrame struct {
	port  string
	frame []byte
}

type ctlRequest struct {
	method string
	args   []string
	reply  chan []byte // nil reply: send nothing, as teamd does
}

// New checks the options; Run starts the daemon.
func New(opts Options) (*Daemon, error) {
	if opts.RunDir == "" {
		opts.RunDir = teamd.DefaultRunDir
	}
	if opts.PIDFile == "" {
		opts.PIDFile = filepath.Join(opts.RunDir, opts.Config.Device+".pid")
	}
	if opts.TakeoverSignal == 0 {
		opts.TakeoverSignal = teamd.TakeoverSignal
	}
	if opts.Profile == "" {
		opts.Profile = teamd.ProfileHLD
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return &Daemon{
		opts:   opts,
		log:    opts.Logger.With("team", opts.Config.Device),
		lag:    lag{cfg: opts.Config, ports: map[string]*port{}},
		silent: opts.Passive,
		conns:  map[string]*lacpsock.Conn{},
		rx:     make(chan rxFrame, 256),
		ctl:    make(chan ctlRequest),
	}, nil
}

// Run runs until a stop signal or ctx is done. The error is nil for an
// orderly stop.
func (d *Daemon) Run(ctx context.Context) error {
	d.start = time.Now()
	sigs := make(chan os.Signal, 4)
	// teamd catches these (SIGHUP to do nothing with it); SONiC's teamd
	// SIGUSR1 and SIGUSR2 too, and teamdwarm's the takeover signal. A
	// signal a teamd has no handler for kills it: see dieOf.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, d.opts.TakeoverSignal)
	defer signal.Stop(sigs)

	if err := d.checkPIDFile(); err != nil {
		return err
	}
	if err := os.MkdirAll(d.opts.RunDir, 0o755); err != nil {
		return err
	}
	sock := teamd.SocketPath(d.opts.RunDir, d.opts.Config.Device)
	_ = os.Remove(sock) // teamd unlinks and re-binds
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer func() { ln.Close(); os.Remove(sock) }()
	if err := os.Chmod(sock, 0o700); err != nil { // teamd fchmods its socket 0700 before bind
		return fmt.Errorf("control socket: %w", err)
	}
	go d.serve(ln)
	defer d.closePorts()
	if err := os.WriteFile(d.opts.PIDFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer os.Remove(d.opts.PIDFile)
	d.log.Info("teamd stand-in started", "pid", os.Getpid(), "profile", d.opts.Profile, "passive", d.silent, "warm_start", d.opts.Warm,
		"takeover_signal", d.opts.TakeoverSignal, "fault", d.opts.Fault)
	// Up and answering before it has a port, as teamd: its ports come from
	// the kernel's port events once its run loop runs.
	if d.opts.Ready != nil {
		d.opts.Ready()
	}
	addPorts := time.After(portsDelay)

	// One timer, set to the runner's next deadline, as teamd's timerfds
	// are: a ticker would wake every stand-in dozens of times a second,
	// and with 256 of them on the bed that is most of a core.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			d.quit("context done")
			return nil
		case s := <-sigs:
			if stop := d.signal(s.(syscall.Signal)); stop {
				return nil
			}
		case <-addPorts:
			now := time.Now()
			for _, name := range sortedKeys(d.opts.Config.Ports) {
				if err := d.addPort(name, d.opts.Config.Ports[name], now); err != nil {
					return err
				}
			}
			if d.opts.Warm {
				d.foldDumps(now)
			}
		case f := <-d.rx:
			d.receive(f, time.Now())
		case r := <-d.ctl:
			reply := d.control(r.method, r.args)
			r.reply <- reply
		case now := <-timer.C:
			d.lag.tick(now)
		}
		now := time.Now()
		d.transmit(now)
		next := d.lag.next(now, !d.silent)
		if next.IsZero() {
			next = now.Add(time.Hour)
		}
		timer.Reset(next.Sub(now))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// checkPIDFile refuses to start beside a live teamd for the same device,
// as teamd does.
func (d *Daemon) checkPIDFile() error {
	b, err := os.ReadFile(d.opts.PIDFile)
	if err != nil {
		return nil
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err == nil && pid > 0 && pid != os.Getpid() {
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("this program is already running as PID %d (%s)", pid, d.opts.PIDFile)
		}
	}
	return nil
}

func (d *Daemon) addPort(name string, cfg PortConfig, now time.Time) error {
	if _, ok := d.lag.ports[name]; ok {
		return nil
	}
	c, err := lacpsock.Listen(name)
	if err != nil {
		return err
	}
	d.conns[name] = c
	p := &port{name: name, ifindex: c.Ifindex(), number: c.Ifindex(), mac: c.MAC(), cfg: cfg}
	if sonicPort, ok := sonicPortNumber(name); ok {
		p.number = sonicPort // SONiC's patch: "Ethernet" number + 1
	}
	d.lag.add(p, now)
	go d.read(name, c)
	d.log.Info("port added", "port", name, "ifindex", p.ifindex, "lacp_port", p.number)
	return nil
}

// sonicPortNumber mirrors SONiC's teamd patch, which derives the LACP port
// number from a front-panel name: EthernetN -> N+1.
func sonicPortNumber(name string) (int, bool) {
	var n int
	if rest, ok := strings.CutPrefix(name, "Ethernet"); ok {
		if _, err := fmt.Sscanf(rest, "%d", &n); err == nil && fmt.Sprint(n) == rest {
			return n + 1, true
		}
	}
	return 0, false
}

func (d *Daemon) removePort(name string) bool {
	c, ok := d.conns[name]
	if !ok {
		return false
	}
	c.Close()
	delete(d.conns, name)
	delete(d.lag.ports, name)
	d.lag.reselect()
	return true
}

// closePorts closes every port's socket at once: closing an AF_PACKET
// socket waits for an RCU grace period (synchronize_net), and one after
// the other they would add up on the handoff's critical path.
func (d *Daemon) closePorts() {
	var wg sync.WaitGroup
	for name, c := range d.conns {
		wg.Go(func() { c.Close() })
		delete(d.conns, name)
	}
	wg.Wait()
}

// read feeds one port's received frames to the state goroutine.
func (d *Daemon) read(name string, c *lacpsock.Conn) {
	buf := make([]byte, 1600)
	for {
		fr, err := c.Read(buf)
		if err != nil {
			return
		}
		if fr.Outgoing {
			continue
		}
		d.rx <- rxFrame{port: name, frame: append([]byte(nil), fr.Data...)}
	}
}

func (d *Daemon) receive(f rxFrame, now time.Time) {
	p, ok := d.lag.ports[f.port]
	if !ok || d.opts.Fault == FaultDeaf {
		return
	}
	pdu, err := proto.ParseLACPDU(f.frame)
	if err != nil {
		// teamd: "malformed LACP PDU came." — dropped, session goes on.
		d.log.Warn("malformed LACPDU dropped", "port", f.port, "err", err)
		return
	}
	d.lag.receive(p, pdu, f.frame, now)
}

func (d *Daemon) transmit(now time.Time) {
	if d.silent {
		return
	}
	for _, o := range d.lag.due(now) {
		d.send(o.port, o.pdu)
	}
}

func (d *Daemon) send(p *port, pdu proto.LACPDU) {
	b, _ := pdu.MarshalBinary()
	if c := d.conns[p.name]; c != nil {
		if err := c.Write(b); err != nil {
			d.log.Warn("send failed", "port", p.name, "err", err)
		}
	}
}

// portsDelay is how long after its socket answers the stand-in's ports
// appear: teamd's run loop turns the kernel's port events into ports soon
// after start, and a client that asks at once sees none.
const portsDelay = 100 * time.Millisecond

// signal handles one signal; it returns true when the daemon must stop.
func (d *Daemon) signal(s syscall.Signal) bool {
	p := d.opts.Profile
	switch {
	case s == syscall.SIGHUP:
		d.log.Info("SIGHUP: nothing to do (as teamd)")
		return false
	case s == d.opts.TakeoverSignal && !p.PassiveStart(),
		(s == syscall.SIGUSR1 || s == syscall.SIGUSR2) && !p.WarmStop():
		d.dieOf(s)
		return true
	case s == d.opts.TakeoverSignal:
		if !d.silent {
			d.log.Warn("takeover signal while already transmitting: ignored", "signal", s)
			return false
		}
		d.takeover()
		return false
	case s == syscall.SIGUSR1 && d.opts.Fault == FaultIgnoreSIGUSR1:
		d.log.Warn("SIGUSR1 ignored (fault ignore-sigusr1)")
		return false
	case s == syscall.SIGUSR1:
		d.warmStop()
		return true
	case s == syscall.SIGUSR2:
		d.fastStop()
		return true
	default: // SIGTERM, SIGINT, SIGQUIT
		d.quit(s.String())
		return true
	}
}

// dieOf plays a teamd without a handler for s: the default action, death.
// A Go program cannot restore SIG_DFL, so it exits as the shell reports a
// death by signal, 128+n; it sends nothing more.
func (d *Daemon) dieOf(s syscall.Signal) {
	d.closePorts()
	d.log.Warn("no handler for this signal in a teamd of this profile: dying of it", "signal", s, "profile", d.opts.Profile)
	os.Exit(128 + int(s))
}

// takeover ends the passive standby: fold in the dump files the old teamd
// left for ports that have not heard the partner themselves, then transmit
// on every port at once.
func (d *Daemon) takeover() {
	used := d.foldDumps(time.Now())
	d.silent = false
	d.lag.markAllNTT()
	d.log.Info("takeover: transmitting", "dump_files_used", used)
}

// foldDumps reads (and deletes, as teamd does) the -L dump files: each
// port that has not heard the partner itself takes its saved PDU. It
// returns how many were used.
func (d *Daemon) foldDumps(now time.Time) int {
	used := 0
	if d.opts.DumpDir != "" {
		for _, p := range d.lag.sortedPorts() {
			path := filepath.Join(d.opts.DumpDir, p.name)
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			os.Remove(path) // teamd deletes what it read
			if p.state == stateCurrent {
				continue // live PDUs are newer than the dump
			}
			if pdu, err := proto.ParseLACPDU(b); err == nil {
				d.lag.receive(p, pdu, b, now)
				used++
			}
		}
		os.Remove(filepath.Join(d.opts.DumpDir, d.opts.Config.Device))
	}
	return used
}

// warmStop is SONiC's SIGUSR1: one last PDU on each selected port, the dump
// files, exit without touching anything more.
func (d *Daemon) warmStop() {
	d.lastPDU()
	d.closePorts() // nothing more goes out
	if err := d.writeDumps(); err != nil {
		d.log.Error("writing dump files", "err", err)
	}
	d.log.Info("warm stop (SIGUSR1): dump files written, exiting")
}

// fastStop is SONiC's SIGUSR2 (fast-reboot): last PDU, no per-port files.
func (d *Daemon) fastStop() {
	d.lastPDU()
	d.closePorts()
	d.log.Info("fast stop (SIGUSR2): exiting")
}

// lastPDU sends SONiC's parting PDU, unchanged state, on each selected
// port, unless this is a silent standby.
func (d *Daemon) lastPDU() {
	if d.silent {
		return
	}
	for _, p := range d.lag.sortedPorts() {
		if p.selected {
			d.send(p, d.lag.pdu(p, d.lag.actor(p)))
		}
	}
}

// quit is stock teamd's stop: every port says it is out of sync.
func (d *Daemon) quit(why string) {
	if !d.silent {
		for _, p := range d.lag.sortedPorts() {
			a := d.lag.actor(p)
			a.State &^= proto.InService
			d.send(p, d.lag.pdu(p, a))
		}
	}
	d.closePorts()
	d.log.Info("stopping", "why", why)
}

func (d *Daemon) writeDumps() error {
	if d.opts.DumpDir == "" {
		return nil
	}
	if err := os.MkdirAll(d.opts.DumpDir, 0o755); err != nil {
		return err
	}
	dump := teamd.LAGDump{Carrier: false}
	var errs []error
	for _, p := range d.lag.sortedPorts() {
		dump.Ports = append(dump.Ports, teamd.DumpPort{Name: p.name, Enabled: p.selected})
		if p.selected {
			dump.Carrier = true
		}
		if len(p.lastRx) == proto.FrameLen {
			errs = append(errs, os.WriteFile(filepath.Join(d.opts.DumpDir, p.name), p.lastRx, 0o644))
		}
	}
	b, _ := dump.AppendBinary(nil)
	errs = append(errs, os.WriteFile(filepath.Join(d.opts.DumpDir, d.opts.Config.Device), b, 0o644))
	return errors.Join(errs...)
}
