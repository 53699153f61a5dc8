package statecmd

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teamdwarm/teamdwarm/inspect"
	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/proto/prototest"
	"github.com/teamdwarm/teamdwarm/statefile"
)

var update = flag.Bool("update", false, "rewrite testdata/samples")

// samples is a record directory and a teamd dump directory as they look
// mid-handoff; README's inspector example uses them.
const samples = "testdata/samples"

func writeSamples(t *testing.T, dir string) {
	t.Helper()
	c := prototest.DefaultClock
	rec := filepath.Join(dir, "teamdwarm")
	d, err := statefile.OpenDir(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []proto.Record{
		prototest.Snapshot("PortChannel1", 1, 2, c),
		prototest.Standby("PortChannel1", 2, 2, c),
		prototest.Active("PortChannel1", 2, 2, c),
		prototest.Active("PortChannel2", 1, 2, c),
		prototest.Cutover(1, []string{"PortChannel1", "PortChannel2"}, c),
	} {
		if r, ok := r.(*proto.Active); ok && r.Epoch == 1 {
			r.Path, r.FromEpoch = proto.PathCold, 0
		}
		if _, err := d.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	dump := filepath.Join(dir, "teamd")
	if err := os.MkdirAll(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	s := prototest.Snapshot("PortChannel1", 1, 2, c)
	for _, m := range s.Members {
		if err := os.WriteFile(filepath.Join(dump, m.Name), m.LastRx, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dump, "PortChannel1"), s.LAGDump, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSamplesUpToDate(t *testing.T) {
	if *update {
		os.RemoveAll(samples)
		writeSamples(t, samples)
	}
	// The checked-in samples must still be valid records.
	es, err := statefile.List(filepath.Join(samples, "teamdwarm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 5 {
		t.Fatalf("want 5 sample records, got %d (go test -run TestSamples -update rewrites them)", len(es))
	}
	for _, e := range es {
		if e.Err != nil {
			t.Errorf("%s: %v (go test -run TestSamples -update rewrites them)", e.Name, e.Err)
		}
	}
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, cli.IO{Stdout: &out, Stderr: &errb})
	code := cli.Report("teamd-state", err, &errb)
	return out.String(), errb.String(), code
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	writeSamples(t, dir)
	rec := filepath.Join(dir, "teamdwarm")
	dump := filepath.Join(dir, "teamd")
	garbage := filepath.Join(dir, "garbage")
	_ = os.WriteFile(garbage, []byte("hello\n"), 0o644)
	// A sparse 2 GiB file: refused by its size, never read into memory.
	huge := filepath.Join(dir, "huge")
	if f, err := os.Create(huge); err == nil {
		_ = f.Truncate(2 << 30)
		f.Close()
	}
	empty := filepath.Join(dir, "empty")
	_ = os.Mkdir(empty, 0o700)
	corrupt := filepath.Join(dir, "corrupt")
	_ = os.Mkdir(corrupt, 0o700)
	good, _ := os.ReadFile(filepath.Join(rec, "PortChannel1.snapshot"))
	good[len(good)-3] ^= 0xff
	_ = os.WriteFile(filepath.Join(corrupt, "PortChannel1.snapshot"), good, 0o600)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string // fragments, in order
		stderr string
	}{
		{"no command", nil, 2, nil, "teamd-state: missing command"},
		{"unknown command", []string{"frob"}, 2, nil, `unknown command "frob"`},
		{"bad flag", []string{"show", "--yaml", rec}, 2, nil, "flag provided but not defined"},
		{"show dir", []string{"show", rec}, 0, []string{
			"LAG", "ROLE", "EPOCH",
			"PortChannel1", "active", "2", "path snapshot from epoch 1",
			"PortChannel1", "snapshot", "1", "2", "teamd exited 0",
			"PortChannel1", "standby", "2",
			"PortChannel2", "active", "1", "path cold",
			"-", "cutover", "epoch 1 -> 2, 2 LAGs"}, ""},
		{"show snapshot", []string{"show", filepath.Join(rec, "PortChannel1.snapshot")}, 0, []string{
			"snapshot record, epoch 1", "runner:", "fast rate: yes", "ports:", "Ethernet0",
			"aggregator ID: 100, Selected", "state: current", "actor lacpdu info:", "system: 02:54:44:00:00:01",
			"state: 0x3f (activity|timeout|aggregation|sync|collecting|distributing)", "Ethernet4"}, ""},
		{"show port dump", []string{"show", filepath.Join(dump, "Ethernet0")}, 0, []string{
			"teamd per-port dump", "partner lacpdu info (the partner's actor)", "system: 02:50:45:45:52:01",
			"actor lacpdu info (us, as the partner saw us)", "system: 02:54:44:00:00:01"}, ""},
		{"show lag dump", []string{"show", filepath.Join(dump, "PortChannel1")}, 0, []string{
			"teamd LAG dump", "carrier: yes", "Ethernet0", "enabled: yes", "Ethernet4"}, ""},
		{"show dump dir", []string{"show", dump}, 0, []string{"teamd port dump", "Ethernet0", "teamd port dump", "Ethernet4", "teamd LAG dump"}, ""},
		{"show missing", []string{"show", filepath.Join(dir, "nope")}, 1, nil, "nope: no such file or directory"},
		{"show garbage", []string{"show", garbage}, 1, nil, "not a teamdwarm record nor a teamd dump file"},
		{"show huge file", []string{"show", huge}, 1, nil, "over the 1048576-byte limit"},
		{"show empty dir", []string{"show", empty}, 1, nil, "no teamdwarm records and no teamd dump files"},
		{"validate ok", []string{"validate", rec}, 0, []string{"PortChannel1.active: ok (active of PortChannel1, epoch 2, 2 members)", "cutover: ok (cutover, epoch 2)"}, ""},
		{"validate corrupt", []string{"validate", corrupt, filepath.Join(rec, "cutover")}, 1, []string{
			"PortChannel1.snapshot: INVALID:", "checksum mismatch", "cutover: ok"}, ""},
		{"validate garbage", []string{"validate", garbage}, 1, []string{"garbage: INVALID:"}, ""},
		{"validate usage", []string{"validate"}, 2, nil, "validate: want PATH..."},
		{"diff same", []string{"diff", filepath.Join(rec, "PortChannel1.snapshot"), filepath.Join(rec, "PortChannel1.standby")}, 0, []string{"no differences"}, ""},
		{"diff usage", []string{"diff", rec}, 2, nil, "diff: want A B"},
		{"diff cutover", []string{"diff", filepath.Join(rec, "cutover"), filepath.Join(rec, "PortChannel1.active")}, 1, nil, "a cutover record has no members"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			rest := out
			for _, f := range tt.stdout {
				i := strings.Index(rest, f)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order)\nstdout:\n%s", f, out)
				}
				rest = rest[i+len(f):]
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("stderr lacks %q:\n%s", tt.stderr, errOut)
			}
			if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine") {
				t.Fatalf("stack trace on stderr:\n%s", errOut)
			}
		})
	}
}

func TestDiffFindsChanges(t *testing.T) {
	dir := t.TempDir()
	d, _ := statefile.OpenDir(dir)
	c := prototest.DefaultClock
	a := prototest.Snapshot("PortChannel1", 1, 3, c)
	pa, _ := d.Write(a)
	b := prototest.Standby("PortChannel1", 2, 2, c)
	b.Members[0].Partner.State &^= proto.StateSync
	b.Members[1].Partner.Key = 99
	b.Members[1].State = "expired"
	pb, _ := d.Write(b)
	out, _, code := run(t, "diff", "--json", pa, pb)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	var got []inspect.Difference
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"Ethernet0 partner.state": true, "Ethernet4 partner": true, "Ethernet4 state": true, "Ethernet8 present": true}
	if len(got) != len(want) {
		t.Fatalf("want %d differences, got %+v", len(want), got)
	}
	for _, d := range got {
		if !want[d.Member+" "+d.Field] {
			t.Errorf("unexpected difference %+v", d)
		}
	}
}

func TestShowJSON(t *testing.T) {
	dir := t.TempDir()
	writeSamples(t, dir)
	out, _, code := run(t, "show", "--json", filepath.Join(dir, "teamdwarm"), filepath.Join(dir, "teamd", "Ethernet0"))
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var items []map[string]any
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(items) != 6 {
		t.Fatalf("want 6 items, got %d", len(items))
	}
	snap := items[1]
	if snap["kind"] != "snapshot" || snap["lag"] != "PortChannel1" || snap["members"] != 2.0 {
		t.Fatalf("snapshot item: %v", snap)
	}
	members := snap["record"].(map[string]any)["members"].([]any)
	if members[0].(map[string]any)["actor"].(map[string]any)["system"] != "02:54:44:00:00:01" {
		t.Fatalf("member JSON: %v", members[0])
	}
	if items[5]["type"] != "teamd-port-dump" {
		t.Fatalf("dump item: %v", items[5])
	}
}

func TestWatchPrintsRecords(t *testing.T) {
	dir := t.TempDir()
	d, _ := statefile.OpenDir(dir)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw, _ := os.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"watch", "--json", dir}, cli.IO{Stdout: pw, Stderr: pw})
		pw.Close()
	}()
	c := prototest.DefaultClock
	if _, err := d.Write(prototest.Standby("PortChannel7", 4, 2, c)); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(pr)
	var it inspect.Item
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(raw)
	_ = json.Unmarshal(b, &struct {
		LAG   *string `json:"lag"`
		Kind  *string `json:"kind"`
		Epoch *uint64 `json:"epoch"`
	}{&it.LAG, &it.Kind, &it.Epoch})
	if it.LAG != "PortChannel7" || it.Kind != "standby" || it.Epoch != 4 {
		t.Fatalf("watch printed %v", raw)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
}
