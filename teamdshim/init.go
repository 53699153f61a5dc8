package teamdshim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/teamdwarm/teamdwarm/internal/sys/signame"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"golang.org/x/sys/unix"
)

// InitOptions configure Init, the entrypoint (PID 1) of a teamd container.
type InitOptions struct {
	// ConfigDir holds one teamd JSON config per LAG (*.conf or *.json);
	// the LAG is the config's "device", or the file name without its
	// extension.
	ConfigDir string
	// Wrapper is the command that runs one LAG: the shim's own run mode,
	// e.g. ["/usr/bin/teamd-shim", "run", "--"]. Init appends teamd's
	// command line to it.
	Wrapper []string
	// Teamd is the teamd program and the options every LAG gets, e.g.
	// ["/usr/bin/teamd", "-L", "/var/warmboot/teamd/"]; Init adds
	// -t <lag> -f <config>.
	Teamd  []string
	Logger *slog.Logger
}

// LAGConfig is one LAG's config file.
type LAGConfig struct {
	LAG  string
	Path string
}

// ReadConfigDir lists the LAG configs of dir, in teamd.CompareNames order.
func ReadConfigDir(dir string) ([]LAGConfig, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("teamd configs: %w", err)
	}
	var out []LAGConfig
	seen := map[string]string{}
	for _, de := range des {
		ext := filepath.Ext(de.Name())
		if de.IsDir() || (ext != ".conf" && ext != ".json") {
			continue
		}
		path := filepath.Join(dir, de.Name())
		b, err := statefile.ReadBounded(path)
		if err != nil {
			return nil, fmt.Errorf("teamd config: %w", err)
		}
		var c struct {
			Device string `json:"device"`
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("teamd config %s: %w", path, err)
		}
		lag := c.Device
		if lag == "" {
			lag = strings.TrimSuffix(de.Name(), ext)
		}
		if !proto.ValidLAGName(lag) {
			return nil, fmt.Errorf("teamd config %s: device %q is not a LAG name", path, lag)
		}
		if other, dup := seen[lag]; dup {
			return nil, fmt.Errorf("teamd configs %s and %s both configure %s", other, path, lag)
		}
		seen[lag] = path
		out = append(out, LAGConfig{LAG: lag, Path: path})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("teamd configs: no *.conf or *.json in %s", dir)
	}
	slices.SortFunc(out, func(a, b LAGConfig) int { return teamd.CompareNames(a.LAG, b.LAG) })
	return out, nil
}

// Init runs one wrapper per LAG config and stays until every wrapper has
// exited: it forwards SIGUSR1, SIGTERM, SIGINT, SIGQUIT and SIGHUP to every
// wrapper, reaps every child (orphans included: as PID 1, or as a child
// subreaper elsewhere), and returns 0 only if every wrapper exited 0.
//
// It must outlive the handoff: when PID 1 exits the kernel kills the rest
// of the container, so Init returns only after the last wrapper.
func Init(ctx context.Context, opts InitOptions) (int, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if len(opts.Wrapper) == 0 || len(opts.Teamd) == 0 {
		return 1, errors.New("init: no wrapper or teamd command")
	}
	configs, err := ReadConfigDir(opts.ConfigDir)
	if err != nil {
		return 1, err
	}
	if os.Getpid() != 1 {
		// Orphans of our wrappers come to us, as they would to PID 1.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 1, fmt.Errorf("init: become a subreaper: %w", err)
		}
	}
	// One owner of wait4: this loop. Subscribed before any child starts so
	// that no exit is missed; children are started with os.StartProcess
	// and never waited for elsewhere.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	wrappers := map[int]string{} // pid -> LAG, while it runs
	failed := map[string]string{}
	for _, c := range configs {
		argv := append(append(slices.Clone(opts.Wrapper), opts.Teamd...), "-t", c.LAG, "-f", c.Path)
		p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
		if err != nil {
			log.Error("cannot start the LAG's shim", "lag", c.LAG, "err", err)
			failed[c.LAG] = err.Error()
			continue
		}
		wrappers[p.Pid] = c.LAG
		log.Info("started", "lag", c.LAG, "pid", p.Pid, "config", c.Path)
		_ = p.Release() // the reaper below waits, not os.Process (and Release clears Pid)
	}
	for len(wrappers) > 0 {
		select {
		case <-ctx.Done():
			forward(wrappers, syscall.SIGTERM, log)
			ctx = context.Background()
		case sig := <-sigs:
			if sig != syscall.SIGCHLD {
				forward(wrappers, sig.(syscall.Signal), log)
				continue
			}
			reap(wrappers, failed, log)
		}
	}
	if len(failed) > 0 {
		lags := make([]string, 0, len(failed))
		for l, why := range failed {
			lags = append(lags, l+" ("+why+")")
		}
		slices.Sort(lags)
		return 1, fmt.Errorf("init: %d of %d LAGs failed: %s", len(failed), len(configs), strings.Join(lags, ", "))
	}
	log.Info("every LAG's shim exited cleanly", "lags", len(configs))
	return 0, nil
}

func forward(wrappers map[int]string, sig syscall.Signal, log *slog.Logger) {
	log.Info("forwarding signal", "signal", sig, "wrappers", len(wrappers))
	for pid := range wrappers {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			log.Error("forwarding signal", "pid", pid, "err", err)
		}
	}
}

// reap collects every exited child; SIGCHLDs coalesce, so it loops.
func reap(wrappers map[int]string, failed map[string]string, log *slog.Logger) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		lag, ours := wrappers[pid]
		if !ours {
			continue // an orphan: reaped, nothing more
		}
		delete(wrappers, pid)
		code := signame.ExitCode(syscall.WaitStatus(ws))
		if code != 0 {
			failed[lag] = fmt.Sprintf("exit %d", code)
			log.Error("shim exited", "lag", lag, "pid", pid, "code", code)
		} else {
			log.Info("shim exited", "lag", lag, "pid", pid)
		}
	}
}
