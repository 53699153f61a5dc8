package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teamdwarm/teamdwarm/integration/dut"
	"github.com/teamdwarm/teamdwarm/integration/testbed"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

// The README's main job as a newcomer runs it, at 2 LAGs: teamdwarm-demo
// builds its images and switch, upgrades it, says with its exit status
// and its -json result that every LAG went to the new container on the
// snapshot path without the peer noticing, and leaves nothing behind.
func TestDemo(t *testing.T) {
	needBed(t)
	cmd := exec.Command(bins.demo, "-bin", filepath.Dir(bins.demo), "-lags", "2", "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res struct {
		OK      bool   `json:"ok"`
		Error   string `json:"error"`
		Upgrade struct {
			Result string `json:"result"`
			LAGs   []struct {
				LAG  string `json:"lag"`
				Path string `json:"path"`
			} `json:"lags"`
		} `json:"upgrade"`
		Peer struct {
			Members []struct {
				Member   string   `json:"member"`
				Problems []string `json:"problems"`
			} `json:"members"`
		} `json:"peer"`
		Handoff struct {
			NotMeasured string `json:"not_measured"`
			TakenOver   int    `json:"taken_over"`
		} `json:"cpu_of_the_handoff"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("teamdwarm-demo -json (%v) printed no result: %v\nstdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), stderr.String())
	}
	if runErr != nil || !res.OK {
		t.Fatalf("teamdwarm-demo: %v, ok %v: %s\n%s", runErr, res.OK, res.Error, stderr.String())
	}
	if res.Upgrade.Result != string(supervisor.ResultOK) || len(res.Upgrade.LAGs) != 2 {
		t.Errorf("teamd-warm's report: result %q, %d LAGs, want ok and 2", res.Upgrade.Result, len(res.Upgrade.LAGs))
	}
	for _, l := range res.Upgrade.LAGs {
		if l.Path != "snapshot" {
			t.Errorf("%s taken over on the %q path, want snapshot", l.LAG, l.Path)
		}
	}
	if len(res.Peer.Members) != 4 {
		t.Errorf("the peer's verdict has %d members, want 4", len(res.Peer.Members))
	}
	for _, m := range res.Peer.Members {
		if len(m.Problems) > 0 {
			t.Errorf("%s: %s", m.Member, strings.Join(m.Problems, "; "))
		}
	}
	if res.Handoff.NotMeasured != "" || res.Handoff.TakenOver != 2 {
		t.Errorf("the handoff's CPU: %d taken over, not measured: %q", res.Handoff.TakenOver, res.Handoff.NotMeasured)
	}
	if left := demoLeftovers(t, cmd.Process.Pid); len(left) > 0 {
		t.Errorf("the demo left behind: %s", strings.Join(left, ", "))
	}
}

// demoLeftovers lists what the demo with process ID pid made and did not
// remove: its labs' containers and images, its beds' namespaces.
func demoLeftovers(t *testing.T, pid int) []string {
	t.Helper()
	left, err := dut.Left(context.Background(), pid)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := testbed.Namespaces(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range ns {
		left = append(left, "namespace "+name)
	}
	return left
}
