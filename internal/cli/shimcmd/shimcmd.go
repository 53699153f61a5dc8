// Package shimcmd is the teamd-shim command: the wrapper around one teamd
// (run), the entrypoint of a teamd container (init), and a look at the
// record directory (status).
//
// Installed as /usr/bin/teamd (a symlink to teamd-shim), it takes teamd's
// own command line, so that SONiC's teammgrd, which runs
// "/usr/bin/teamd {-w -o|-r} -t <LAG> -c '<json>' -L /var/warmboot/teamd/ -g -d",
// runs teamd through the shim unchanged; the real teamd then lives at
// $TEAMDWARM_TEAMD (default /usr/bin/teamd.real). Installed as teamdctl, it
// answers the one question teamd-warm asks in a container, "teamdctl <lag>
// state dump", for images without libteam's teamd.
package shimcmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/teamdwarm/teamdwarm/inspect"
	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamdshim"
)

// EnvTeamd names the real teamd when the shim is installed as teamd.
const EnvTeamd = "TEAMDWARM_TEAMD"

// DefaultRealTeamd is where the real teamd is moved when the shim takes its
// place as /usr/bin/teamd.
const DefaultRealTeamd = "/usr/bin/teamd.real"

// DefaultConfigDir is where init looks for one teamd JSON config per LAG.
const DefaultConfigDir = "/etc/teamd"

const usage = `teamd-shim <command> ...

Commands:
  run [flags] -- TEAMD [teamd options]   wrap one teamd (see the package doc for the roles)
  init [flags] [-- teamd options]        entrypoint: one wrapper per LAG config
  status [--json] [DIR]                  each LAG's records: role, epoch, age
  dump LAG...                            every LAG's teamd StateDump, as one JSON object
  probe [--teamd PATH]                   what the real teamd can do (profile, version), as JSON

Installed as "teamd", it takes teamd's command line and runs $TEAMDWARM_TEAMD
(default /usr/bin/teamd.real) through "run". Installed as "teamdctl", it
answers "teamdctl TEAM state dump" (what teamd-warm asks in a container).`

// Main is the entry point; it returns the process exit code. argv0 picks
// the mode: "teamd" means teamd's command line follows.
func Main(argv0 string, args []string, stdout, stderr io.Writer) int {
	io := cli.IO{Stdout: stdout, Stderr: stderr}
	name := "teamd-shim"
	var code int
	var err error
	switch {
	case filepath.Base(argv0) == "teamd":
		name = "teamd"
		real := os.Getenv(EnvTeamd)
		if real == "" {
			real = DefaultRealTeamd
		}
		code, err = runShim(append([]string{real}, args...), teamdshim.Options{}, io)
	case filepath.Base(argv0) == "teamdctl":
		name = "teamdctl"
		err = teamdctlCmd(args, io)
	case len(args) == 0:
		err = cli.Usagef("missing command\nusage: %s", usage)
	default:
		switch args[0] {
		case "run":
			code, err = run(args[1:], io)
		case "init":
			code, err = initCmd(args[1:], io)
		case "status":
			err = status(args[1:], io)
		case "dump":
			err = dumpCmd(args[1:], io)
		case "probe":
			err = probeCmd(args[1:], io)
		case "help", "-h", "--help":
			fmt.Fprintf(stdout, "usage: %s\n", usage)
		default:
			err = cli.Usagef("unknown command %q\nusage: %s", args[0], usage)
		}
	}
	if err != nil {
		return cli.Report(name, err, stderr)
	}
	return code
}

func run(args []string, io cli.IO) (int, error) {
	fs := cli.NewFlags("run", io.Stderr, "teamd-shim run [flags] -- TEAMD [teamd options]")
	var o teamdshim.Options
	role := fs.String("role", "", "active or standby (default $"+proto.EnvRole+", else active)")
	fs.Uint64Var(&o.Epoch, "epoch", 0, "this shim's epoch (default $"+proto.EnvEpoch+"; a standby needs one)")
	fs.StringVar(&o.Dir, "dir", "", "record directory (default $"+proto.EnvDir+", else "+teamdshim.DefaultDir+")")
	fs.StringVar(&o.RunDir, "run-dir", "", "teamd's run directory (default $"+proto.EnvRunDir+", else "+teamd.DefaultRunDir+")")
	sig := fs.String("takeover-signal", "", "signal that makes a passive teamd transmit (default $"+proto.EnvTakeoverSignal+", else "+signame.String(teamd.TakeoverSignal)+")")
	profile := fs.String("teamd-profile", "", "what the wrapped teamd is declared to be: stock, sonic or hld (default $"+proto.EnvTeamdProfile+"; the shim checks it)")
	fs.DurationVar(&o.Budget, "budget", 0, "after the cutover, take over without a snapshot after this long (default 1.2s)")
	fs.DurationVar(&o.StopTimeout, "stop-timeout", 0, "kill the old teamd this long after SIGUSR1 (default 800ms)")
	fs.StringVar(&o.Container, "container", "", "container name for the records (default $"+proto.EnvContainer+", else the host name)")
	if err := cli.Parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		return 0, cli.Usagef("run: missing teamd command line after --")
	}
	o.Role = proto.Role(*role)
	if o.Role != "" && o.Role != proto.RoleActive && o.Role != proto.RoleStandby {
		return 0, cli.Usagef("run: --role %q: want active or standby", *role)
	}
	if *sig != "" {
		s, err := signame.Parse(*sig)
		if err == nil {
			err = teamd.CheckTakeoverSignal(s)
		}
		if err != nil {
			return 0, cli.Usagef("run: --takeover-signal: %v", err)
		}
		o.TakeoverSignal = s
	}
	if p := teamd.Profile(*profile); *profile != "" {
		if !p.Valid() {
			return 0, cli.Usagef("run: --teamd-profile %q: want stock, sonic or hld", *profile)
		}
		o.TeamdProfile = p
	}
	return runShim(fs.Args(), o, io)
}

// runShim runs one shim around the teamd command line argv, daemonizing
// first if argv asks teamd to (-d).
func runShim(argv []string, o teamdshim.Options, io cli.IO) (int, error) {
	if err := o.FromEnv(os.Getenv); err != nil {
		return 0, cli.Usagef("%v", err)
	}
	a, err := teamd.ParseArgs(argv[1:])
	if err != nil {
		return 0, cli.Usagef("teamd command line: %v", err)
	}
	report, isChild := teamdshim.DaemonChild()
	if a.Has("d") && !isChild {
		team, _ := a.Value("t")
		runDir := o.RunDir
		if runDir == "" {
			runDir = teamd.DefaultRunDir
		}
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			return 1, err
		}
		if err := teamdshim.Daemonize(os.Args[1:], filepath.Join(runDir, team+".shim.log")); err != nil {
			return 1, err
		}
		return 0, nil
	}
	o.Teamd = argv
	o.Watch = teamdshim.SharedWatch()
	o.TeamdTimerSlack = teamdshim.TeamdTimerSlackFromInit()
	teamdshim.TeamdGODEBUGFromInit()
	o.Logger = slog.New(slog.NewTextHandler(io.Stderr, nil)).With("shim", os.Getpid())
	if isChild {
		o.Ready = func() { report(nil) }
	}
	s, err := teamdshim.New(o)
	if err == nil {
		var code int
		code, err = s.Run(context.Background())
		if err == nil {
			return code, nil
		}
	}
	if isChild {
		report(err)
	}
	return 1, err
}

func initCmd(args []string, io cli.IO) (int, error) {
	fs := cli.NewFlags("init", io.Stderr, "teamd-shim init [flags] [-- teamd options for every LAG]")
	dir := fs.String("config-dir", DefaultConfigDir, "one teamd JSON config per LAG (*.conf, *.json)")
	teamdPath := fs.String("teamd", "", "the real teamd (default $"+EnvTeamd+", else "+DefaultRealTeamd+")")
	slack := fs.Duration("timer-slack", teamdshim.DefaultShimTimerSlack, "timer slack of init and its shims: how late their timers may fire, to come together (0: keep the slack init was given; teamd always keeps that one)")
	if err := cli.Parse(fs, args); err != nil {
		return 0, err
	}
	if *slack < 0 {
		return 0, cli.Usagef("init: -timer-slack %v: want 0 or more", *slack)
	}
	if *slack == 0 {
		*slack = -1 // InitOptions: init's own
	}
	if err := teamdshim.ReexecWithTimerSlack(*slack); err != nil {
		fmt.Fprintf(io.Stderr, "teamd-shim init: %v; init runs with the timer slack it was given\n", err)
	}
	*teamdPath = realTeamd(*teamdPath)
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	code, err := teamdshim.Init(context.Background(), teamdshim.InitOptions{
		ConfigDir:      *dir,
		Dir:            os.Getenv(proto.EnvDir),
		Wrapper:        []string{self, "run", "--"},
		Teamd:          append([]string{*teamdPath}, fs.Args()...),
		ShimTimerSlack: *slack,
		Logger:         slog.New(slog.NewTextHandler(io.Stderr, nil)).With("init", os.Getpid()),
	})
	if err != nil && code == 0 {
		code = 1
	}
	return code, err
}

// realTeamd is the teamd init runs: path, else $TEAMDWARM_TEAMD, else
// the default.
func realTeamd(path string) string {
	if path == "" {
		if path = os.Getenv(EnvTeamd); path == "" {
			path = DefaultRealTeamd
		}
	}
	return path
}

// probeCmd prints what init's teamd can do, as its shims would find it:
// teamd-warm asks a new image this before the first upgrade onto it.
func probeCmd(args []string, io cli.IO) error {
	fs := cli.NewFlags("probe", io.Stderr, "teamd-shim probe [--teamd PATH]")
	teamdPath := fs.String("teamd", "", "the real teamd (default $"+EnvTeamd+", else "+DefaultRealTeamd+")")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("probe: unexpected argument %q", fs.Arg(0))
	}
	info, err := teamd.Probe(context.Background(), realTeamd(*teamdPath))
	if err != nil {
		return err
	}
	return cli.JSON(io.Stdout, info)
}

// status is the record directory's table, as teamd-state show DIR prints
// it.
func status(args []string, io cli.IO) error {
	fs := cli.NewFlags("status", io.Stderr, "teamd-shim status [--json] [DIR]")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return cli.Usagef("status: want at most one directory")
	}
	dir := fs.Arg(0)
	if dir == "" {
		if dir = os.Getenv(proto.EnvDir); dir == "" {
			dir = teamdshim.DefaultDir
		}
	}
	if ok, err := inspect.IsDir(dir); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%s: not a directory", dir)
		}
		return fmt.Errorf("record directory: %w", err)
	}
	items, err := inspect.Dir(dir, time.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		return cli.JSON(io.Stdout, items)
	}
	return inspect.WriteTable(io.Stdout, items)
}
