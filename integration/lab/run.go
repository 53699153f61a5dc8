package lab

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
	"github.com/teamdwarm/teamdwarm/teamnl"
)

// Scenario is one thing the lab proves.
type Scenario struct {
	Name string
	// Needs names the teamd builds it runs ("debian", "sonic", "hld").
	Needs []string
	Run   func(ctx context.Context, e *Env) error
}

// GuestConfig is what the scenarios run with inside the VM, by host path.
type GuestConfig struct {
	Bin    string           // the project's binaries (make build)
	Teamds map[string]Teamd // by name
	Out    string           // where results.json goes (a read-write share)
	Record string           // if set, where team.ko's netlink replies are recorded
	Only   []string         // scenarios to run; all if empty
	Lags   int              // LAGs per scenario
	Log    io.Writer        // detail, on failure
}

// Env is one scenario's world: its topology, the peer's sampler, the wire
// observer, the traffic, and what it has found.
type Env struct {
	GuestConfig
	Topo    *Topo
	Peer    *Sampler
	Wire    *testbed.Observer
	Traffic *Traffic
	Dir     string // scratch of this scenario
	procs   []*Proc
	daemons []*shimless.Teamd // teamds started without a shim (startSONiC)
	figures []Figure
}

// Figure is one measured figure of a scenario.
type Figure struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	Text  string `json:"text"`
}

// Result is one scenario's outcome; results.json holds a list of them.
type Result struct {
	Name    string        `json:"name"`
	Pass    bool          `json:"pass"`
	Error   string        `json:"error,omitempty"`
	TookMS  float64       `json:"took_ms"`
	Figures []Figure      `json:"figures"`
	Started time.Time     `json:"started"`
	took    time.Duration `json:"-"`
}

// Figure records a figure: its value for results.json, and text (a
// printf of args) for the scenario's line.
func (e *Env) Figure(name string, value any, format string, args ...any) {
	e.figures = append(e.figures, Figure{Name: name, Value: value, Text: fmt.Sprintf(format, args...)})
}

// Bin is the path of one of the project's binaries.
func (e *Env) Bin(name string) string { return filepath.Join(e.GuestConfig.Bin, name) }

// Records is the scenario's record directory.
func (e *Env) Records() string { return filepath.Join(e.Dir, "records") }

// DumpDir is teamd's -L directory (SONiC's /var/warmboot/teamd).
func (e *Env) DumpDir() string { return filepath.Join(e.Dir, "teamd") }

// Kernel reads l's team device from the kernel, in the DUT namespace.
func (e *Env) Kernel(l LAG) (*proto.KernelLAG, error) {
	var c *teamnl.Conn
	if err := testbed.InNetns(DUT, func() (err error) { c, err = teamnl.Dial(); return err }); err != nil {
		return nil, err
	}
	defer c.Close()
	return c.LAG(l.Name)
}

// RunScenarios runs each scenario in a fresh world and prints one line per
// scenario, then "N passed, M failed". It writes results.json to
// cfg.Out.
func RunScenarios(ctx context.Context, cfg GuestConfig, all []Scenario, w io.Writer) (passed, failed int) {
	var results []Result
	for _, sc := range all {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, sc.Name) {
			continue
		}
		r := runOne(ctx, cfg, sc)
		results = append(results, r)
		var texts []string
		for _, f := range r.Figures {
			texts = append(texts, f.Text)
		}
		status := "PASS"
		if r.Pass {
			passed++
		} else {
			status = "FAIL"
			failed++
		}
		line := fmt.Sprintf("%s %s (%.1fs)", status, r.Name, r.took.Seconds())
		if len(texts) > 0 {
			line += ": " + strings.Join(texts, "; ")
		}
		if r.Error != "" {
			line += "\n     error: " + strings.ReplaceAll(r.Error, "\n", "\n     ")
		}
		fmt.Fprintln(w, line)
	}
	if cfg.Out != "" {
		if b, err := json.MarshalIndent(results, "", "  "); err == nil {
			_ = os.WriteFile(filepath.Join(cfg.Out, "results.json"), append(b, '\n'), 0o644)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)
	return passed, failed
}

func runOne(ctx context.Context, cfg GuestConfig, sc Scenario) (r Result) {
	r = Result{Name: sc.Name, Started: time.Now(), Figures: []Figure{}}
	e := &Env{GuestConfig: cfg, Dir: filepath.Join("/tmp/lab", sc.Name)}
	defer func() {
		r.took = time.Since(r.Started)
		r.TookMS = float64(r.took.Microseconds()) / 1000
		r.Figures = append(r.Figures, e.figures...)
		if rec := recover(); rec != nil {
			r.Pass, r.Error = false, fmt.Sprintf("panic: %v", rec)
		}
	}()
	for _, need := range sc.Needs {
		if t, ok := cfg.Teamds[need]; !ok || t.Program == "" {
			r.Error = fmt.Sprintf("needs the %s teamd, which this lab has no build of", need)
			return r
		}
	}
	err := func() error {
		_ = os.RemoveAll(e.Dir)
		if err := os.MkdirAll(e.DumpDir(), 0o755); err != nil {
			return err
		}
		if _, err := statefile.OpenDir(e.Records()); err != nil {
			return err
		}
		topo, err := Build(ctx, max(cfg.Lags, 1), 2, e.Dir)
		if err != nil {
			return err
		}
		e.Topo = topo
		defer e.teardown()
		var bonds []string
		for _, l := range topo.LAGs {
			bonds = append(bonds, l.Bond)
		}
		if e.Peer, err = Sample(PEER, bonds); err != nil {
			return err
		}
		if e.Wire, err = testbed.Observe(PEER, topo.Testbed()); err != nil {
			return err
		}
		return sc.Run(ctx, e)
	}()
	r.Pass = err == nil
	if err != nil {
		r.Error = err.Error()
		if cfg.Log != nil {
			for _, p := range e.procs {
				fmt.Fprintf(cfg.Log, "---- %s (exit %d) log:\n%s", p.Name, p.code, tail(p.Log.String(), 40))
			}
		}
	}
	return r
}

func (e *Env) teardown() {
	if e.Traffic != nil {
		e.Traffic.Stop()
	}
	for _, p := range e.procs {
		p.Kill()
	}
	for _, t := range e.daemons {
		if p, err := t.Open(); err == nil { // still the teamd started, never another process
			_ = p.Signal(syscall.SIGKILL)
			p.Close()
		}
	}
	if e.Peer != nil {
		e.Peer.Stop()
	}
	if e.Wire != nil {
		_ = e.Wire.Close()
	}
	_ = e.Topo.Close()
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n") + "\n"
}

// recordNetlink writes team.ko's replies for every LAG's read to
// cfg.Record, one file per operation, each message prefixed by its length
// (4 bytes, big endian): teamnl's tests play them back.
func (e *Env) recordNetlink() error {
	var c *teamnl.Conn
	if err := testbed.InNetns(DUT, func() (err error) { c, err = teamnl.Dial(); return err }); err != nil {
		return err
	}
	defer c.Close()
	files := map[string][]byte{}
	c.SetTrace(func(op string, msgs [][]byte) {
		for _, m := range msgs {
			files[op] = binary.BigEndian.AppendUint32(files[op], uint32(len(m)))
			files[op] = append(files[op], m...)
		}
	})
	var reads []*proto.KernelLAG
	for _, l := range e.Topo.LAGs {
		k, err := c.LAG(l.Name)
		if err != nil {
			return err
		}
		reads = append(reads, k)
	}
	if err := os.MkdirAll(e.Record, 0o755); err != nil {
		return err
	}
	for op, b := range files {
		if err := os.WriteFile(filepath.Join(e.Record, op+".bin"), b, 0o644); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(reads, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.Record, "lags.json"), append(b, '\n'), 0o644)
}
