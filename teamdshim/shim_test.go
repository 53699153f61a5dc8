package teamdshim_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/monoclock"
	"github.com/teamdwarm/teamdwarm/internal/test/heldfiles"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
	"github.com/teamdwarm/teamdwarm/teamdshim"
)

func runShim(t *testing.T, e env, lag string, flags []string, extraEnv ...string) *proc {
	t.Helper()
	argv := append([]string{bins.shim, "run"}, flags...)
	argv = append(argv, "--", bins.teamdsim, "-t", lag, "-c", config(lag), "-L", e.dump)
	return start(t, e.vars(extraEnv...), argv...)
}

// An active shim announces itself, and on SIGUSR1 stops teamd and leaves a
// snapshot behind, then exits 0.
func TestActiveHandsOver(t *testing.T) {
	e := newEnv(t)
	p := runShim(t, e, "PortChannel1", nil)
	a := activeRecord(t, e.dir, "PortChannel1", 1)
	if a.Path != proto.PathCold || a.Writer.PID != p.cmd.Process.Pid {
		t.Errorf("active record: path %q writer %+v, want cold by pid %d", a.Path, a.Writer, p.cmd.Process.Pid)
	}
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel1.pid"))
	sent := monoclock.Now()
	p.signal(t, syscall.SIGUSR1)
	if code := p.exit(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d after the handoff, want 0", code)
	}
	waitGone(t, teamdPID, time.Second)
	rec, err := statefile.ReadFile(filepath.Join(e.dir, "PortChannel1.snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	s := rec.(*proto.Snapshot)
	if s.Epoch != 1 || s.TakenMono < sent || s.TeamdStop != "exit status 0" {
		t.Errorf("snapshot: epoch %d, taken %d (signal at %d), teamd %q", s.Epoch, s.TakenMono, sent, s.TeamdStop)
	}
	// SONiC's per-LAG dump file, written by teamd on SIGUSR1, is carried.
	if _, err := teamd.ParseLAGDump(s.LAGDump); err != nil {
		t.Errorf("LAG dump in the snapshot: %v", err)
	}
	if _, err := os.Stat(teamdshim.PIDFile(e.run, "PortChannel1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the shim's pid file is left behind: %v", err)
	}
}

// An old teamd that ignores SIGUSR1 is killed at the bound; the snapshot
// says so.
func TestHandOverKillsTeamdPastTheBound(t *testing.T) {
	e := newEnv(t)
	p := runShim(t, e, "PortChannel1", []string{"--stop-timeout", "300ms"}, "TEAMDSIM_FAULT=ignore-sigusr1")
	activeRecord(t, e.dir, "PortChannel1", 1)
	p.signal(t, syscall.SIGUSR1)
	if code := p.exit(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	rec, err := statefile.ReadFile(filepath.Join(e.dir, "PortChannel1.snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.(*proto.Snapshot).TeamdStop; !strings.HasPrefix(got, "killed after 300ms") {
		t.Errorf("teamd_stop = %q, want killed after 300ms", got)
	}
}

func TestSecondShimForALAGIsRefused(t *testing.T) {
	e := newEnv(t)
	runShim(t, e, "PortChannel1", nil)
	activeRecord(t, e.dir, "PortChannel1", 1)
	second := runShim(t, e, "PortChannel1", nil)
	if code := second.exit(t, 5*time.Second); code != 1 {
		t.Fatalf("second shim: exit %d, want 1", code)
	}
	if out := second.out.String(); !strings.Contains(out, "another teamd-shim runs this LAG") {
		t.Errorf("second shim's message: %q", out)
	}
}

// The shim passes stop signals on and exits with teamd's status.
func TestRelaysSignalsAndExitsWithTeamdStatus(t *testing.T) {
	for _, tt := range []struct {
		name string
		send func(t *testing.T, shim *proc, teamdPID int)
		want int
	}{
		{"SIGTERM to the shim", func(t *testing.T, shim *proc, _ int) { shim.signal(t, syscall.SIGTERM) }, 0},
		// teamd catches SIGHUP and does nothing with it (teamd.c): it is
		// relayed, teamd stays, and the SIGTERM after it ends teamd.
		{"SIGHUP, then SIGTERM", func(t *testing.T, shim *proc, _ int) {
			shim.signal(t, syscall.SIGHUP)
			// Two signals sent at once may reach the shim in either
			// order; the SIGTERM goes once the SIGHUP was relayed.
			if !shim.out.WaitFor("signal=hangup", 5*time.Second) {
				t.Fatal("SIGHUP not relayed")
			}
			shim.signal(t, syscall.SIGTERM)
		}, 0},
		{"teamd killed", func(t *testing.T, _ *proc, pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }, 128 + 9},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p := runShim(t, e, "PortChannel1", nil)
			activeRecord(t, e.dir, "PortChannel1", 1)
			tt.send(t, p, readPID(t, filepath.Join(e.run, "PortChannel1.pid")))
			if code := p.exit(t, 5*time.Second); code != tt.want {
				t.Fatalf("exit %d, want %d", code, tt.want)
			}
		})
	}
}

// A teamd killed before it ever answered (kill -9 or the OOM killer at its
// start) ends the shim with teamd's status, as any teamd death does, so
// that init restarts it: it is no failure of teamd's to start. (Here teamd
// answers elsewhere, so that it cannot answer the shim first.)
func TestTeamdKilledBeforeItAnsweredIsRestartable(t *testing.T) {
	e := newEnv(t)
	elsewhere := t.TempDir()
	p := runShim(t, e, "PortChannel1", nil, "TEAMDSIM_RUN_DIR="+elsewhere)
	awaitOutput(t, p, "teamd stand-in started")
	_ = syscall.Kill(readPID(t, filepath.Join(elsewhere, "PortChannel1.pid")), syscall.SIGKILL)
	if code := p.exit(t, 5*time.Second); code != 128+9 {
		t.Fatalf("exit %d, want %d (teamd's, killed)\n%s", code, 128+9, p.out.String())
	}
}

// Epochs fence: a shim of the LAG's current epoch comes back active
// whatever role it is given; an older one refuses to run.
func TestEpochs(t *testing.T) {
	for _, tt := range []struct {
		name     string
		existing uint64 // epoch of the .active already there, 0 for none
		flags    []string
		epoch    uint64     // of the .active it writes
		path     proto.Path // "" if it must refuse
	}{
		{"first start", 0, nil, 1, proto.PathCold},
		{"restart of the active", 3, nil, 3, proto.PathRestart},
		{"standby restarted after its takeover", 2, []string{"--role", "standby", "--epoch", "2"}, 2, proto.PathRestart},
		{"warm start", 0, []string{"--", "-w"}, 1, proto.PathWarmStart},
		{"standby older than the active", 3, []string{"--role", "standby", "--epoch", "2"}, 0, ""},
		{"active older than the active", 3, []string{"--epoch", "2"}, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.existing > 0 {
				d, err := statefile.OpenDir(e.dir)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.Write(&proto.Active{Schema: proto.SchemaVersion, LAG: "PortChannel1", Epoch: tt.existing,
					ConfigDigest: "sha256:x", Path: proto.PathSnapshot, FromEpoch: tt.existing - 1, SinceMono: 1}); err != nil {
					t.Fatal(err)
				}
			}
			flags, teamdExtra := tt.flags, []string(nil)
			if len(flags) > 0 && flags[0] == "--" {
				flags, teamdExtra = nil, flags[1:]
			}
			argv := append(append([]string{bins.shim, "run"}, flags...), "--", bins.teamdsim, "-t", "PortChannel1", "-c", config("PortChannel1"))
			p := start(t, e.vars(), append(argv, teamdExtra...)...)
			if tt.path == "" {
				if code := p.exit(t, 5*time.Second); code != 1 || !strings.Contains(p.out.String(), "fenced by a newer epoch") {
					t.Fatalf("exit %d, want 1 with a fencing message:\n%s", code, p.out.String())
				}
				return
			}
			a := await(t, e.dir, "PortChannel1", proto.KindActive, func(r proto.Record) bool {
				return r.(*proto.Active).Writer.PID == p.cmd.Process.Pid
			}).(*proto.Active)
			if a.Path != tt.path || a.Epoch != tt.epoch {
				t.Fatalf("active record: path %q epoch %d, want %q epoch %d", a.Path, a.Epoch, tt.path, tt.epoch)
			}
			// However it became active, it holds its handoff's snapshot file.
			awaitReserved(t, e.dir, p.cmd.Process.Pid, 1)
		})
	}
}

// awaitReserved waits, bounded, until process pid holds n unnamed files
// in dir (statefile.Dir.Reserve). Nothing notifies a descriptor's opening:
// it looks every few milliseconds.
func awaitReserved(t *testing.T, dir string, pid, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		held, err := heldfiles.Unnamed(statefile.WritingDir(dir), pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(held) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shim holds %d reserved record files, want %d", len(held), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A standby needs an epoch, and bad settings are refused before teamd runs.
func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags []string
		env   []string
		want  string
	}{
		{"standby without epoch", []string{"--role", "standby"}, nil, "a standby needs an epoch"},
		{"bad role", []string{"--role", "leader"}, nil, `--role "leader"`},
		{"bad epoch env", nil, []string{"TEAMDWARM_EPOCH=zero"}, "TEAMDWARM_EPOCH"},
		{"bad signal", []string{"--takeover-signal", "SIGNOPE"}, nil, "--takeover-signal"},
		{"takeover signal that stops teamd", []string{"--takeover-signal", "SIGUSR2"}, nil, "fast-reboot stop"},
		{"takeover signal from the environment", nil, []string{"TEAMDWARM_TAKEOVER_SIGNAL=SIGTERM"}, "SIGTERM stops teamd"},
		{"bad profile", []string{"--teamd-profile", "fancy"}, nil, `--teamd-profile "fancy"`},
		{"declared profile is not the real one", nil, []string{"TEAMDWARM_TEAMD_PROFILE=sonic"}, "is declared sonic"},
		{"standby over a teamd without passive start", []string{"--role", "standby", "--epoch", "2"}, []string{"TEAMDSIM_PROFILE=sonic"}, "a standby needs a teamd that starts passive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p := runShim(t, e, "PortChannel1", tt.flags, tt.env...)
			code := p.exit(t, 5*time.Second)
			if code == 0 || !strings.Contains(p.out.String(), tt.want) {
				t.Fatalf("exit %d, output %q: want failure mentioning %q", code, p.out.String(), tt.want)
			}
			if _, err := os.Stat(filepath.Join(e.run, "PortChannel1.pid")); err == nil {
				t.Error("teamd was started")
			}
		})
	}
}

// status shows each LAG's records: role, epoch, age; as text and JSON.
func TestStatus(t *testing.T) {
	e := newEnv(t)
	runShim(t, e, "PortChannel1", nil)
	activeRecord(t, e.dir, "PortChannel1", 1)
	text := start(t, e.vars(), bins.shim, "status", e.dir)
	if code := text.exit(t, 5*time.Second); code != 0 {
		t.Fatalf("status: exit %d", code)
	}
	if out := text.out.String(); !strings.Contains(out, "LAG") || !regexp.MustCompile(`PortChannel1\s+active\s+1\s+\d+\.\ds`).MatchString(out) {
		t.Errorf("status table:\n%s", out)
	}
	js := start(t, e.vars(), bins.shim, "status", "--json", e.dir)
	if code := js.exit(t, 5*time.Second); code != 0 {
		t.Fatalf("status --json: exit %d", code)
	}
	var items []struct {
		Kind  string `json:"kind"`
		LAG   string `json:"lag"`
		Epoch uint64 `json:"epoch"`
	}
	if err := json.Unmarshal([]byte(js.out.String()), &items); err != nil || len(items) != 1 || items[0].Kind != "active" || items[0].Epoch != 1 {
		t.Errorf("status --json: %v %+v\n%s", err, items, js.out.String())
	}
	missing := start(t, e.vars(), bins.shim, "status", filepath.Join(e.dir, "nope"))
	if code := missing.exit(t, 5*time.Second); code != 1 || !strings.Contains(missing.out.String(), "record directory") {
		t.Errorf("status of a missing directory: exit %d, %q", code, missing.out.String())
	}
}

// A teamd that cannot stop warm (Debian's, stock libteam) is never handed
// over by killing it: SIGUSR1 is refused, teamd keeps the LAG, and no
// snapshot claims that the old speaker is silent.
func TestStockTeamdIsNotHandedOver(t *testing.T) {
	e := newEnv(t)
	argv := []string{bins.shim, "run", "--", bins.teamdsim, "-t", "PortChannel1", "-c", config("PortChannel1")}
	p := start(t, e.vars("TEAMDSIM_PROFILE=stock"), argv...)
	a := activeRecord(t, e.dir, "PortChannel1", 1)
	if a.Teamd == nil || a.Teamd.Profile != "stock" {
		t.Fatalf("active record's teamd: %+v, want profile stock", a.Teamd)
	}
	p.signal(t, syscall.SIGUSR1)
	awaitOutput(t, p, "SIGUSR1 refused: this teamd cannot stop warm")
	teamdPID := readPID(t, filepath.Join(e.run, "PortChannel1.pid"))
	if err := syscall.Kill(teamdPID, 0); err != nil {
		t.Fatalf("teamd is gone after the refused SIGUSR1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "PortChannel1.snapshot")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a snapshot was written: %v", err)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.exit(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want teamd's 0", code)
	}
}

// A --run-dir where teamd does not listen is named, with where it does,
// within seconds: no silent wait.
func TestRunDirMismatch(t *testing.T) {
	e := newEnv(t)
	elsewhere := t.TempDir()
	p := runShim(t, e, "PortChannel1", nil, "TEAMDSIM_RUN_DIR="+elsewhere)
	if code := p.exit(t, 10*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	out := p.out.String()
	for _, want := range []string{"teamd listens on " + filepath.Join(elsewhere, "PortChannel1.sock"),
		"not on " + filepath.Join(e.run, "PortChannel1.sock"), "--run-dir " + elsewhere} {
		if !strings.Contains(out, want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}
}
