package teamdsim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// CmdLine is teamd's command line as the stand-in reads it.
type CmdLine struct {
	Team       string // -t
	ConfigJSON string // -c, or the contents of -f
	DumpDir    string // -L
	Passive    bool   // -P (teamdwarm's teamd): passive until the takeover signal
	Warm       bool   // -w (SONiC's teamd): fold in the -L dump files, transmit at once
	Help       bool   // -h
	Version    bool   // -v
	TakeOver   bool   // -o
	Recreate   bool   // -r
	PIDFile    string // -p
	Daemonize  bool   // -d
	Debug      int    // -g, repeatable
	NoPorts    bool   // -n
	// Stand-in only (long options, or the environment for when a shim
	// passes teamd's own command line): --run-dir / TEAMDSIM_RUN_DIR and
	// --takeover-signal / TEAMDSIM_TAKEOVER_SIGNAL.
	RunDir         string
	TakeoverSignal syscall.Signal
	// Faults for tests, from the environment only, so that a test can
	// give them to a stand-in that a shim or a container starts:
	// TEAMDSIM_FAULT=ignore-sigusr1 (an old teamd that does not hand over)
	// or deaf (a teamd that never hears the partner, so never gets ready).
	Fault Fault
	// Profile is the teamd the stand-in plays, from TEAMDSIM_PROFILE:
	// hld (the default: teamdwarm's teamd), sonic (no -P, no takeover
	// signal) or stock (Debian's: no -P, -w or -L; SIGUSR1 kills it).
	Profile teamd.Profile
}

// ParseCmdLine reads teamd's options (see teamdargs) and the stand-in's own
// long options, given as --name=value.
func ParseCmdLine(args []string, getenv func(string) string) (CmdLine, error) {
	cl := CmdLine{RunDir: getenv("TEAMDSIM_RUN_DIR"), TakeoverSignal: teamd.TakeoverSignal, Profile: teamd.ProfileHLD}
	if p := teamd.Profile(getenv("TEAMDSIM_PROFILE")); p != "" {
		if !p.Valid() {
			return cl, fmt.Errorf("TEAMDSIM_PROFILE: %q, want hld, sonic or stock", p)
		}
		cl.Profile = p
	}
	if s := getenv("TEAMDSIM_TAKEOVER_SIGNAL"); s != "" {
		sig, err := signame.Parse(s)
		if err != nil {
			return cl, fmt.Errorf("TEAMDSIM_TAKEOVER_SIGNAL: %w", err)
		}
		cl.TakeoverSignal = sig
	}
	switch f := Fault(getenv("TEAMDSIM_FAULT")); f {
	case FaultNone, FaultIgnoreSIGUSR1, FaultDeaf:
		cl.Fault = f
	default:
		return cl, fmt.Errorf("TEAMDSIM_FAULT: %q, want %s or %s", f, FaultIgnoreSIGUSR1, FaultDeaf)
	}
	a, err := teamd.ParseArgs(args)
	if err != nil {
		return cl, err
	}
	configFile := ""
	for _, o := range a.Opts {
		if o.Long {
			switch o.Name {
			case "help":
				cl.Help = true
			case "version":
				cl.Version = true
			case "run-dir":
				cl.RunDir = o.Value
			case "takeover-signal":
				sig, err := signame.Parse(o.Value)
				if err != nil {
					return cl, fmt.Errorf("--takeover-signal: %w", err)
				}
				cl.TakeoverSignal = sig
			default:
				return cl, fmt.Errorf("unknown option --%s", o.Name)
			}
			continue
		}
		switch o.Name {
		case "t":
			cl.Team = o.Value
		case "c":
			cl.ConfigJSON = o.Value
		case "f":
			configFile = o.Value
		case "L":
			cl.DumpDir = o.Value
		case "p":
			cl.PIDFile = o.Value
		case "P":
			if !cl.Profile.PassiveStart() {
				return cl, fmt.Errorf("invalid option -- 'P' (a %s teamd has no passive start)", cl.Profile)
			}
			cl.Passive = true
		case "w":
			if !cl.Profile.WarmStop() {
				return cl, fmt.Errorf("invalid option -- 'w' (a %s teamd has no warm start)", cl.Profile)
			}
			cl.Warm = true
		case "o":
			cl.TakeOver = true
		case "r":
			cl.Recreate = true
		case "d":
			cl.Daemonize = true
		case "g":
			cl.Debug++
		case "n":
			cl.NoPorts = true
		case "h":
			cl.Help = true
		case "v":
			cl.Version = true
		case "k", "e":
			return cl, fmt.Errorf("option -%s is not implemented by the stand-in", o.Name)
		}
		// -N, -D, -Z, -U, -u, -l: accepted, nothing to do without a kernel team device.
	}
	if cl.Help || cl.Version {
		return cl, nil
	}
	if cl.Profile == teamd.ProfileStock && cl.DumpDir != "" {
		return cl, fmt.Errorf("invalid option -- 'L' (a stock teamd has no dump directory)")
	}
	if configFile != "" {
		b, err := os.ReadFile(configFile)
		if err != nil {
			return cl, fmt.Errorf("-f: %w", err)
		}
		cl.ConfigJSON = string(b)
	}
	if cl.ConfigJSON == "" {
		return cl, fmt.Errorf("no config: give -c JSON or -f FILE")
	}
	if cl.TakeoverSignal >= 32 && cl.TakeoverSignal <= 34 {
		// A C teamd can take SIGRTMIN (34 with glibc); this Go program
		// cannot: the Go runtime keeps signals 32-34 for itself.
		return cl, fmt.Errorf("takeover signal %s: the stand-in is a Go program and the Go runtime reserves signals 32-34; use SIGRTMIN+1 or later, or SIGUSR2",
			signame.String(cl.TakeoverSignal))
	}
	return cl, nil
}

// env names of the daemonized child.
const (
	envChild   = "TEAMDSIM_DAEMON_CHILD"
	readyFDNum = 3 // the child's fd of the readiness pipe (first ExtraFiles entry)
)

// Main is the stand-in's entry point; it returns the exit code.
func Main(args []string, stderr io.Writer) int {
	cl, err := ParseCmdLine(args, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 2
	}
	if cl.Version {
		fmt.Fprintln(os.Stdout, "teamd 1.31")
		return 0
	}
	if cl.Help {
		fmt.Fprint(os.Stdout, Help(cl.Profile))
		return 0
	}
	cfg, err := ParseConfig([]byte(cl.ConfigJSON), cl.Team)
	if err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 1
	}
	if cl.NoPorts {
		cfg.Ports = map[string]PortConfig{}
	}
	if cl.Daemonize && os.Getenv(envChild) == "" {
		return daemonize(args, cl, cfg, stderr)
	}
	level := slog.LevelInfo
	if cl.Debug > 0 {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := Options{Config: cfg, ConfigJSON: cl.ConfigJSON, DumpDir: cl.DumpDir, Passive: cl.Passive, Warm: cl.Warm, Profile: cl.Profile, RunDir: cl.RunDir,
		PIDFile: cl.PIDFile, Debug: cl.Debug, Fault: cl.Fault, TakeoverSignal: cl.TakeoverSignal, Logger: logger}
	var ready *os.File
	if os.Getenv(envChild) != "" {
		opts.Daemonized = true
		ready = os.NewFile(readyFDNum, "ready")
		opts.Ready = func() { fmt.Fprintln(ready, "ok"); ready.Close() }
	}
	d, err := New(opts)
	if err == nil {
		err = d.Run(context.Background())
	}
	if err != nil {
		if ready != nil {
			fmt.Fprintln(ready, err) // the waiting parent prints it
		}
		logger.Error("teamd stand-in failed", "err", err)
		return 1
	}
	return 0
}

// daemonize starts a copy of this process as the daemon and returns once it
// is ready, as teamd -d does. The daemon's log goes to <run dir>/<team>.log.
func daemonize(args []string, cl CmdLine, cfg Config, stderr io.Writer) int {
	runDir := cl.RunDir
	if runDir == "" {
		runDir = "/var/run/teamd"
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 1
	}
	logf, err := os.OpenFile(filepath.Join(runDir, cfg.Device+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 1
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envChild+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "teamd: %v\n", err)
		return 1
	}
	pw.Close()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	if strings.TrimSpace(line) != "ok" {
		if line == "" {
			line = "daemon exited before it was ready"
		}
		fmt.Fprintf(stderr, "teamd: %s", strings.TrimSpace(line)+"\n")
		return 1
	}
	_ = cmd.Process.Release()
	return 0
}

// Help is the stand-in's --help for a teamd of profile p: libteam's option
// list, with SONiC's -w and -L and teamdwarm's -P where p has them (what
// teamd.Probe reads).
func Help(p teamd.Profile) string {
	var b strings.Builder
	b.WriteString(`teamd [options]
    -h --help                Show this help
    -d --daemonize           Daemonize after startup
    -v --version             Show version
    -f --config-file=FILE    Load the specified configuration file
    -c --config=TEXT         Use given config string
    -p --pid-file=FILE       Use the specified PID file
    -g --debug               Increase verbosity
    -r --force-recreate      Force team device recreation in case it already exists
    -o --take-over           Take over the device if it already exists
    -N --no-quit-destroy     Do not destroy the device on quit
    -t --team-dev=DEVNAME    Use the specified team device
    -n --no-ports            Start without ports
`)
	if p.WarmStop() {
		b.WriteString("    -w --warm-start          Warm-start startup mode\n")
		b.WriteString("    -L --lacp-directory      Directory for saving lacp pdu dumps\n")
	}
	if p.PassiveStart() {
		fmt.Fprintf(&b, "    -P --passive             Start passive beside a running teamd; take over on %s\n", signame.String(teamd.TakeoverSignal))
	}
	b.WriteString("Available runners: lacp (teamdwarm stand-in)\n")
	return b.String()
}
