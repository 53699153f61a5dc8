package supervisor

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

// Result is how a run ended.
type Result string

// The results. Only ResultOK means every LAG is served by the new
// container; the two rollback results and ResultRefused leave the old one.
const (
	ResultOK             Result = "ok"
	ResultRefused        Result = "refused"         // preflight failed; nothing was changed
	ResultRolledBack     Result = "rolled-back"     // failed before the cutover; undone, the old container serves
	ResultRollbackFailed Result = "rollback-failed" // failed before the cutover and the undo failed too: look at the containers
	ResultFailed         Result = "failed"          // after the cutover, a LAG or the cleanup failed
)

// Millis is a duration that JSON shows in milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration as a number of milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(m)/float64(time.Millisecond), 'f', 3, 64), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Millis) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("milliseconds: %w", err)
	}
	*m = Millis(f * float64(time.Millisecond))
	return nil
}

func (m Millis) String() string {
	d := time.Duration(m)
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

// Report is the outcome of a run; --json prints it as is:
//
//	{
//	  "operation": "upgrade" | "rollback" | "dry-run",
//	  "container": "teamd", "image": "docker-teamd:v2", "dir": "/host/warmboot/teamdwarm",
//	  "result": "ok" | "refused" | "rolled-back" | "rollback-failed" | "failed",
//	  "error": "why, if not ok", "failed_stage": "a3",
//	  "old": {"name","id","image","image_id","exit_code"}, "new": {...},
//	  "from_epoch": 1, "to_epoch": 2, "first_upgrade": true (from a container without teamd-shim),
//	  "started": "RFC 3339", "took_ms": 4123.5,
//	  "stages": [{"stage": "preflight", "took_ms": 120.2}, ...],
//	  "lags": [{
//	    "lag": "PortChannel1", "rate": "fast", "budget_ms": 3000, "teamd": "sonic" | "hld" | ...,
//	    "old_speaker": "teamd pid 4242, no shim" (a first upgrade only),
//	    "members": [{"name": "Ethernet0", "state": "current", "selected": true,
//	                 "gap_ms": 31.2, "gap_from": "last-pdu" | "cutover"}],
//	    "path": "snapshot" | "deadline" | ..., "result": "ok" | "unconfirmed" | "no-takeover",
//	    "takeover_ms": 35.1, "kernel": "unchanged" | "changed: ..." | "unknown (...)",
//	    "note": "why a deadline path"
//	  }],
//	  "notes": ["things worth knowing that are not failures"],
//	  "warnings": ["things to look at in a run that got its result anyway"]
//	}
//
// A member's gap is the silence the handoff left on it: from the old
// teamd's last PDU (gap_from last-pdu, from the snapshot) or, without a
// snapshot, from the cutover (gap_from cutover), to the new teamd's first
// PDU seen leaving. takeover_ms is from the cutover to that first PDU.
type Report struct {
	Operation Operation      `json:"operation"`
	Container string         `json:"container"`
	Image     string         `json:"image"`
	Dir       string         `json:"dir"`
	Result    Result         `json:"result"`
	Error     string         `json:"error,omitempty"`
	Stage     Stage          `json:"failed_stage,omitempty"`
	Old       *ContainerInfo `json:"old,omitempty"`
	New       *ContainerInfo `json:"new,omitempty"`
	FromEpoch uint64         `json:"from_epoch,omitempty"`
	ToEpoch   uint64         `json:"to_epoch,omitempty"`
	// FirstUpgrade: the old container ran its teamds without teamd-shim
	// (SONiC's), and teamd-warm stopped them itself.
	FirstUpgrade bool        `json:"first_upgrade,omitempty"`
	Started      time.Time   `json:"started"`
	Took         Millis      `json:"took_ms"`
	Stages       []StageTime `json:"stages"`
	LAGs         []LAGReport `json:"lags"`
	Notes        []string    `json:"notes,omitempty"`
	// Warnings are what the operator should look at in a run that
	// reached its result anyway (an old container that exited badly).
	Warnings []string `json:"warnings,omitempty"`
}

// ContainerInfo names a container of the run.
type ContainerInfo struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Image    string `json:"image"`
	ImageID  string `json:"image_id"`
	ExitCode *int   `json:"exit_code,omitempty"`
}

// StageTime is how long a stage took.
type StageTime struct {
	Stage Stage  `json:"stage"`
	Took  Millis `json:"took_ms"`
}

// LAG results.
const (
	LAGOK          = "ok"          // the new teamd took over and was seen transmitting
	LAGUnconfirmed = "unconfirmed" // took over, but its first PDU was not seen on every member
	LAGNoTakeover  = "no-takeover" // no .active of the new epoch in time
)

// LAGReport is one LAG: its state before the run and, after a cutover,
// how it was handed over.
type LAGReport struct {
	LAG string `json:"lag"`
	// Rate is "fast" or "slow", from teamd's runner; Budget is how long
	// the peer waits after the last PDU (3 periods).
	Rate    string         `json:"rate"`
	Budget  Millis         `json:"budget_ms"`
	Members []MemberReport `json:"members"`
	// Teamd is the old teamd's profile (stock, sonic, hld), as its shim
	// found it; "" if the shim did not say.
	Teamd string `json:"teamd,omitempty"`
	// OldSpeaker is, in a first upgrade, the old teamd that teamd-warm
	// stops itself: "teamd pid N, no shim".
	OldSpeaker string     `json:"old_speaker,omitempty"`
	Path       proto.Path `json:"path,omitempty"`
	Result     string     `json:"result,omitempty"`
	Takeover   Millis     `json:"takeover_ms,omitempty"`
	// Kernel says whether the kernel's LAG stayed as it was through the
	// handoff: "unchanged", "changed: ..." or "unknown (...)".
	Kernel string `json:"kernel,omitempty"`
	Note   string `json:"note,omitempty"`
}

// handedOver fills lr's result from the new speaker's .active (nil if
// none came) and the old speaker's snapshot (nil if none was valid), with
// the gap arithmetic the Report doc describes: from the old teamd's last PDU
// when the LAG was taken over from its snapshot, else from the cutover, to
// the new teamd's first PDU seen leaving.
func (lr *LAGReport) handedOver(cut *proto.Cutover, a *proto.Active, snap *proto.Snapshot) {
	if a == nil {
		lr.Result = LAGNoTakeover
		return
	}
	lr.Path, lr.Note, lr.Result = a.Path, a.Note, LAGOK
	lr.Kernel = kernelVerdict(snap, a)
	confirmed := a.Timings.Confirmed
	if confirmed == 0 {
		lr.Result = LAGUnconfirmed
		return
	}
	lr.Takeover = Millis(confirmed - cut.StartedMono)
	lastTx := map[string]int64{}
	if snap != nil && a.Path == proto.PathSnapshot {
		for _, sm := range snap.Members {
			if sm.LastTxMono > 0 {
				lastTx[sm.Name] = sm.LastTxMono
			}
		}
	}
	for j := range lr.Members {
		m := &lr.Members[j]
		if at, ok := lastTx[m.Name]; ok {
			m.Gap, m.GapFrom = Millis(confirmed-at), "last-pdu"
		} else {
			m.Gap, m.GapFrom = Millis(confirmed-cut.StartedMono), "cutover"
		}
	}
}

// kernelVerdict compares the kernel's LAG as the old shim left it (its
// snapshot), as the new one found it before its takeover signal, and as it
// was once it wrote .active.
func kernelVerdict(snap *proto.Snapshot, a *proto.Active) string {
	views := []*proto.KernelLAG{a.KernelBefore, a.Kernel}
	if snap != nil && a.Path == proto.PathSnapshot {
		views = append([]*proto.KernelLAG{snap.Kernel}, views...)
	}
	var changes []string
	for i := 1; i < len(views); i++ {
		if !views[i-1].Read() || !views[i].Read() {
			why := "not recorded"
			for _, v := range views {
				if v != nil && v.Err != "" {
					why = v.Err
				}
			}
			return kernelUnknown + " (" + why + ")"
		}
		changes = append(changes, views[i-1].Diff(views[i])...)
	}
	if len(changes) > 0 {
		return "changed: " + strings.Join(changes, ", ")
	}
	return "unchanged"
}

// kernelUnknown is the verdict on a kernel's LAG that could not be read
// (the report gives why in parentheses after it).
const kernelUnknown = "unknown"

// kernelUnknownWhy says why the kernel's LAG is unknown if the verdict v
// says it is.
func kernelUnknownWhy(v string) (string, bool) {
	why, ok := strings.CutPrefix(v, kernelUnknown+" (")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(why, ")")
}

// MemberReport is one member port.
type MemberReport struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Selected bool   `json:"selected"`
	Gap      Millis `json:"gap_ms,omitempty"`
	GapFrom  string `json:"gap_from,omitempty"`
}

// Error is the error of a run that did not end ok; Result says what state
// it left, Stage where it failed.
type Error struct {
	Stage  Stage
	Result Result
	Err    error
}

func (e *Error) Error() string {
	switch e.Result {
	case ResultRefused:
		return fmt.Sprintf("refused: %v (nothing was changed)", e.Err)
	case ResultRolledBack:
		return fmt.Sprintf("%s: %v; rolled back: the old container serves every LAG", e.Stage, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Stage, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ResultOf is the Result an error of Upgrade stands for.
func ResultOf(err error) Result {
	var e *Error
	if err == nil {
		return ResultOK
	}
	if errors.As(err, &e) {
		return e.Result
	}
	return ResultFailed
}

// WriteText prints the report for a person: a summary line, one line per
// member, below them the counts and largest gaps of a large table, and
// the stages' times.
func (r *Report) WriteText(w io.Writer) error {
	what := fmt.Sprintf("%s %s to %s", r.Operation, r.Container, r.Image)
	if r.ToEpoch != 0 {
		what += fmt.Sprintf(" (epoch %d to %d)", r.FromEpoch, r.ToEpoch)
	}
	if r.FirstUpgrade {
		what += ", a first upgrade (the old teamds run without teamd-shim)"
	}
	fmt.Fprintf(w, "%s: %s in %v\n", what, r.Result, r.Took)
	if r.Error != "" {
		fmt.Fprintf(w, "  %s\n", r.Error)
	}
	if len(r.LAGs) > 0 {
		// Past the cutover every LAG has a result; before it, the table is
		// the LAGs as preflight found them.
		handed := slices.ContainsFunc(r.LAGs, func(l LAGReport) bool { return l.Result != "" })
		if err := r.writeTable(w, handed); err != nil {
			return err
		}
		if handed {
			r.writeSummary(w)
		}
	}
	if len(r.Stages) > 0 {
		var st []string
		for _, s := range r.Stages {
			st = append(st, fmt.Sprintf("%s %v", s.Stage, s.Took))
		}
		fmt.Fprintf(w, "stages: %s\n", strings.Join(st, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, n := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", n)
	}
	return nil
}

// writeTable prints a line per member, the LAG's columns on its first.
// A KERNEL that could not be read says "unknown" there and why below
// (writeSummary): the reason is the same for every LAG of a kernel
// without team.ko, and would make the table too wide to read.
func (r *Report) writeTable(w io.Writer, handed bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if handed {
		fmt.Fprintln(tw, "LAG\tRATE\tPATH\tRESULT\tTAKEOVER\tKERNEL\tMEMBER\tGAP\tNOTE")
	} else {
		fmt.Fprintln(tw, "LAG\tRATE\tBUDGET\tTEAMD\tOLD SPEAKER\tMEMBER\tSTATE\tSELECTED")
	}
	for _, l := range r.LAGs {
		lagCols := []string{l.LAG, l.Rate, l.Budget.String(), orDash(l.Teamd), orDash(l.OldSpeaker)}
		if handed {
			kernel := l.Kernel
			if _, ok := kernelUnknownWhy(kernel); ok {
				kernel = kernelUnknown
			}
			lagCols = []string{l.LAG, l.Rate, orDash(string(l.Path)), orDash(l.Result), durOrDash(l.Takeover), orDash(kernel)}
		}
		for i, m := range l.Members {
			if i == 1 {
				lagCols = make([]string, len(lagCols))
			}
			row := append(slices.Clip(lagCols), m.Name)
			if handed {
				gap := durOrDash(m.Gap)
				if m.GapFrom == "cutover" {
					gap += " (from cutover)"
				}
				note := ""
				if i == 0 {
					note = l.Note
				}
				row = append(row, gap, note)
			} else {
				row = append(row, m.State, yesno(m.Selected))
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	return tw.Flush()
}

// writeSummary sums up a table past the cutover: above tallyEach LAGs,
// too many lines to read, the results and paths counted and the LAGs with
// the largest gaps named; at any size, once, why the kernel's LAG is
// unknown for the LAGs whose KERNEL column says so.
func (r *Report) writeSummary(w io.Writer) {
	if len(r.LAGs) > tallyEach {
		r.writeCounts(w)
	}
	r.writeKernelUnknown(w)
}

func (r *Report) writeCounts(w io.Writer) {
	results, paths := map[string]int{}, map[string]int{}
	type lagGap struct {
		lag string
		m   MemberReport
	}
	var gaps []lagGap
	for _, l := range r.LAGs {
		results[orDash(l.Result)]++
		if l.Path != "" {
			paths[string(l.Path)]++
		}
		// A LAG's members hand over together: its largest gap speaks for
		// it, and five LAGs are named rather than two members of each.
		var worst MemberReport
		for _, m := range l.Members {
			if m.Gap > worst.Gap {
				worst = m
			}
		}
		if worst.Gap > 0 {
			gaps = append(gaps, lagGap{l.LAG, worst})
		}
	}
	line := fmt.Sprintf("%d LAGs: %s", len(r.LAGs), countsText(results))
	if len(paths) > 0 {
		line += "; paths: " + countsText(paths)
	}
	fmt.Fprintln(w, line)
	if len(gaps) == 0 {
		return
	}
	slices.SortStableFunc(gaps, func(a, b lagGap) int { return cmp.Compare(b.m.Gap, a.m.Gap) })
	var named []string
	for _, g := range gaps[:min(len(gaps), tallyNames)] {
		s := fmt.Sprintf("%s on %s %v", g.m.Name, g.lag, g.m.Gap)
		if g.m.GapFrom == "cutover" {
			s += " (from cutover)"
		}
		named = append(named, s)
	}
	fmt.Fprintf(w, "largest gaps: %s\n", strings.Join(named, ", "))
}

func (r *Report) writeKernelUnknown(w io.Writer) {
	unknown := map[string][]string{} // why: the LAGs
	for _, l := range r.LAGs {
		if why, ok := kernelUnknownWhy(l.Kernel); ok {
			unknown[why] = append(unknown[why], l.LAG)
		}
	}
	whys := slices.Collect(maps.Keys(unknown))
	slices.SortFunc(whys, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(unknown[b]), len(unknown[a])), strings.Compare(a, b))
	})
	for _, why := range whys {
		lags := unknown[why]
		who := fmt.Sprintf("%d LAGs (%s)", len(lags), someNames(lags, tallyNames))
		switch {
		case len(lags) == len(r.LAGs) && len(lags) > 1:
			who = fmt.Sprintf("every LAG (%d)", len(lags))
		case len(lags) == 1:
			who = lags[0]
		}
		fmt.Fprintf(w, "kernel unknown for %s: %s\n", who, why)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func durOrDash(m Millis) string {
	if m == 0 {
		return "-"
	}
	return m.String()
}

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
