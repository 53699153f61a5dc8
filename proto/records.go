package proto

import (
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the version of the record bodies below. A reader refuses
// any other; bump it on any change that an older reader would misread.
const SchemaVersion = 1

// Kind tells which record a file holds. It is stored in the file's envelope
// and is part of the file name (<lag>.<kind>).
type Kind uint8

// The record kinds.
const (
	KindSnapshot Kind = 1 + iota // <lag>.snapshot, written by the outgoing shim
	KindStandby                  // <lag>.standby, written by the standby shim when ready
	KindActive                   // <lag>.active, written by the shim that transmits
	KindCutover                  // cutover, written by the supervisor
	KindJournal                  // journal, written by the supervisor before each step
)

var kindNames = map[Kind]string{
	KindSnapshot: "snapshot",
	KindStandby:  "standby",
	KindActive:   "active",
	KindCutover:  "cutover",
	KindJournal:  "journal",
}

// String returns the kind's name as used in file names.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool { _, ok := kindNames[k]; return ok }

// Global reports whether k is a record of the whole directory, named by
// its kind alone (cutover, journal), not of one LAG.
func (k Kind) Global() bool { return k == KindCutover || k == KindJournal }

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, bool) {
	for k, name := range kindNames {
		if name == s {
			return k, true
		}
	}
	return 0, false
}

// Record is implemented by the record types.
type Record interface {
	// Kind is the record's kind.
	Kind() Kind
	// RecordLAG is the LAG the record is about ("" for a global kind).
	RecordLAG() string
	// RecordEpoch is the epoch the record belongs to (for a cutover and a
	// journal, the epoch being handed to).
	RecordEpoch() uint64
	// Validate checks the fields a reader relies on.
	Validate() error
}

// ErrInvalid is matched (errors.Is) by every error Validate returns.
var ErrInvalid = errors.New("invalid record")

// FieldError names a record field that is missing or wrong.
type FieldError struct {
	Field  string // dotted path, e.g. "members[2].name"
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidLAGName reports whether s can name a LAG and thus a record file:
// 1 to 15 (IFNAMSIZ-1) of A-Z a-z 0-9 _ . -, what SONiC and the kernel
// accept as a team device name, and never "." or "..".
func ValidLAGName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// Process identifies the process that wrote a record.
type Process struct {
	Container string `msgpack:"container" json:"container"` // container name or ID, "" on the host
	Hostname  string `msgpack:"hostname" json:"hostname"`
	PID       int    `msgpack:"pid" json:"pid"`
}

// Runner holds the lacp runner settings both sides must agree on.
type Runner struct {
	Active   bool   `msgpack:"active" json:"active"`
	FastRate bool   `msgpack:"fast_rate" json:"fast_rate"`
	SysPrio  uint16 `msgpack:"sys_prio" json:"sys_prio"`
}

// Member is one LAG member port as the outgoing teamd left it.
type Member struct {
	Name    string `msgpack:"name" json:"name"`
	Ifindex int    `msgpack:"ifindex" json:"ifindex"`
	MAC     MAC    `msgpack:"mac" json:"mac"`
	Actor   Info   `msgpack:"actor" json:"actor"`
	Partner Info   `msgpack:"partner" json:"partner"`
	// State is teamd's runner state of the port: "current", "expired",
	// "defaulted" or "disabled".
	State        string `msgpack:"state" json:"state"`
	Selected     bool   `msgpack:"selected" json:"selected"`
	AggregatorID int    `msgpack:"aggregator_id" json:"aggregator_id"`
	// LastTxMono is CLOCK_MONOTONIC (ns) of the last PDU the old teamd can
	// have sent: the moment it was told to stop. It is a lower bound, so a
	// deadline computed from it errs on the early side.
	LastTxMono int64     `msgpack:"last_tx_mono" json:"last_tx_mono"`
	LastTx     time.Time `msgpack:"last_tx" json:"last_tx"`
	// LastRx is the last LACPDU frame received from the partner, as teamd
	// saved it in its dump file (124 bytes), or empty if it saved none.
	LastRx []byte `msgpack:"last_rx" json:"last_rx"`
}

// Snapshot is the outgoing shim's record of a LAG. It is written only after
// the old teamd stopped transmitting: its existence means "the old speaker
// is silent".
type Snapshot struct {
	Schema       int     `msgpack:"schema" json:"schema"`
	LAG          string  `msgpack:"lag" json:"lag"`
	Epoch        uint64  `msgpack:"epoch" json:"epoch"`
	Writer       Process `msgpack:"writer" json:"writer"`
	ConfigDigest string  `msgpack:"config_digest" json:"config_digest"`
	TeamMAC      MAC     `msgpack:"team_mac" json:"team_mac"`
	Runner       Runner  `msgpack:"runner" json:"runner"`
	// TeamdStop says how the old teamd ended, e.g. "exited 0" or
	// "killed after 1s: ignored SIGUSR1".
	TeamdStop string    `msgpack:"teamd_stop" json:"teamd_stop"`
	TakenMono int64     `msgpack:"taken_mono" json:"taken_mono"`
	Taken     time.Time `msgpack:"taken" json:"taken"`
	Members   Members   `msgpack:"members" json:"members"`
	// LAGDump is teamd's per-LAG dump file (carrier and port list), if it
	// wrote one.
	LAGDump []byte `msgpack:"lag_dump" json:"lag_dump"`
	// Teamd is the teamd that stopped; Kernel the kernel's LAG right after
	// it did. Both are absent in records of earlier versions.
	Teamd  *TeamdInfo `msgpack:"teamd,omitempty" json:"teamd,omitempty"`
	Kernel *KernelLAG `msgpack:"kernel,omitempty" json:"kernel,omitempty"`
}

// StandbyMember is what the standby has learned about one member.
type StandbyMember struct {
	Name    string `msgpack:"name" json:"name"`
	State   string `msgpack:"state" json:"state"`
	Partner Info   `msgpack:"partner" json:"partner"`
}

// Standby says: this LAG's teamd in the new container is up, passive, and
// receives partner PDUs on every member.
type Standby struct {
	Schema       int             `msgpack:"schema" json:"schema"`
	LAG          string          `msgpack:"lag" json:"lag"`
	Epoch        uint64          `msgpack:"epoch" json:"epoch"`
	Writer       Process         `msgpack:"writer" json:"writer"`
	ConfigDigest string          `msgpack:"config_digest" json:"config_digest"`
	ReadyMono    int64           `msgpack:"ready_mono" json:"ready_mono"`
	Ready        time.Time       `msgpack:"ready" json:"ready"`
	Members      []StandbyMember `msgpack:"members" json:"members"`
	// Teamd is the passive teamd waiting (absent in earlier versions).
	Teamd *TeamdInfo `msgpack:"teamd,omitempty" json:"teamd,omitempty"`
}

// Path says how a shim became the LAG's speaker.
type Path string

// The paths to Active.
const (
	PathCold      Path = "cold"       // started active with no handoff
	PathWarmStart Path = "warm-start" // started active from teamd's own dump files (-w)
	PathSnapshot  Path = "snapshot"   // took over on a valid snapshot
	PathDeadline  Path = "deadline"   // took over because no valid snapshot came in time
	PathRestart   Path = "restart"    // restarted after it had taken over
	// PathFailover: the old speaker died or fell silent before any
	// cutover, and the standby took over so that the LAG would not
	// expire.
	PathFailover Path = "failover"
)

func (p Path) valid() bool {
	switch p {
	case PathCold, PathWarmStart, PathSnapshot, PathDeadline, PathRestart, PathFailover:
		return true
	}
	return false
}

// Timings are the takeover's measured moments, CLOCK_MONOTONIC ns; zero
// where a step did not happen.
type Timings struct {
	CutoverSeen  int64 `msgpack:"cutover_seen" json:"cutover_seen"`
	SnapshotSeen int64 `msgpack:"snapshot_seen" json:"snapshot_seen"`
	SignalSent   int64 `msgpack:"signal_sent" json:"signal_sent"`
	// Confirmed is when a PDU from the new teamd was seen leaving on every
	// member; zero if that was not confirmed.
	Confirmed int64 `msgpack:"confirmed" json:"confirmed"`
}

// Active says: this shim's teamd is the LAG's speaker since Since.
type Active struct {
	Schema       int       `msgpack:"schema" json:"schema"`
	LAG          string    `msgpack:"lag" json:"lag"`
	Epoch        uint64    `msgpack:"epoch" json:"epoch"`
	Writer       Process   `msgpack:"writer" json:"writer"`
	ConfigDigest string    `msgpack:"config_digest" json:"config_digest"`
	Path         Path      `msgpack:"path" json:"path"`
	SinceMono    int64     `msgpack:"since_mono" json:"since_mono"`
	Since        time.Time `msgpack:"since" json:"since"`
	// FromEpoch is the epoch of the snapshot taken over (0 if none).
	FromEpoch uint64  `msgpack:"from_epoch" json:"from_epoch"`
	Timings   Timings `msgpack:"timings" json:"timings"`
	// Note explains a non-snapshot path, e.g. why snapshots were rejected.
	Note    string   `msgpack:"note" json:"note"`
	Members []string `msgpack:"members" json:"members"`
	// Teamd is the teamd that speaks. Kernel is the kernel's LAG when the
	// record was written; after a takeover KernelBefore is the kernel's
	// LAG just before the takeover signal. All three are absent in records
	// of earlier versions.
	Teamd        *TeamdInfo `msgpack:"teamd,omitempty" json:"teamd,omitempty"`
	Kernel       *KernelLAG `msgpack:"kernel,omitempty" json:"kernel,omitempty"`
	KernelBefore *KernelLAG `msgpack:"kernel_before,omitempty" json:"kernel_before,omitempty"`
}

// Cutover is the supervisor's order to hand every LAG from FromEpoch to
// ToEpoch, and the clock the standbys' deadline runs on.
type Cutover struct {
	Schema       int       `msgpack:"schema" json:"schema"`
	FromEpoch    uint64    `msgpack:"from_epoch" json:"from_epoch"`
	ToEpoch      uint64    `msgpack:"to_epoch" json:"to_epoch"`
	Writer       Process   `msgpack:"writer" json:"writer"`
	StartedMono  int64     `msgpack:"started_mono" json:"started_mono"`
	Started      time.Time `msgpack:"started" json:"started"`
	DeadlineMono int64     `msgpack:"deadline_mono" json:"deadline_mono"`
	LAGs         []string  `msgpack:"lags" json:"lags"`
	// Window, if not 0, is how many LAGs hand over per fast period, in
	// the order of LAGs: the LAG at place i waits i/Window periods (its
	// Wave), then hands over right after its teamd's next periodic PDU.
	// A switch's every handoff at once on two cores took each past its
	// budget. Absent in records of earlier versions: all at once.
	Window int `msgpack:"window,omitempty" json:"window,omitempty"`
}

// Waves is how many waves the LAGs hand over in: 1 without waves.
func (r *Cutover) Waves() int {
	if r.Window <= 0 || len(r.LAGs) == 0 {
		return 1
	}
	return (len(r.LAGs)-1)/r.Window + 1
}

// Wave is how many periods lag waits before it hands over: its place in
// LAGs divided by Window; 0 without waves, and for a LAG the list does not
// name.
func (r *Cutover) Wave(lag string) int {
	if r.Window <= 0 {
		return 0
	}
	for i, l := range r.LAGs {
		if l == lag {
			return i / r.Window
		}
	}
	return 0
}

// Journal is the supervisor's account of a run, rewritten durably before
// each step it takes, so that a run whose supervisor died can be finished
// or undone (teamd-warm recover) and status can say where it stands.
type Journal struct {
	Schema    int    `msgpack:"schema" json:"schema"`
	Operation string `msgpack:"operation" json:"operation"` // upgrade or rollback
	Container string `msgpack:"container" json:"container"` // the teamd container's name
	Backup    string `msgpack:"backup" json:"backup"`       // the old container's name during the run
	Image     string `msgpack:"image" json:"image"`         // the new container's image
	OldID     string `msgpack:"old_id" json:"old_id"`
	OldImage  string `msgpack:"old_image" json:"old_image"`
	NewID     string `msgpack:"new_id" json:"new_id"` // "" until a2 created it
	FromEpoch uint64 `msgpack:"from_epoch" json:"from_epoch"`
	ToEpoch   uint64 `msgpack:"to_epoch" json:"to_epoch"`
	// Stage is the step being taken: a1, a2, a3, b1, b2, c1, rollback or
	// recover; "done" once the run ended (Result says how).
	Stage string `msgpack:"stage" json:"stage"`
	// RestartPolicy is the old container's restart policy, set aside at
	// a1 ("" if it had none), and its retry count.
	RestartPolicy     string    `msgpack:"restart_policy" json:"restart_policy"`
	RestartMaxRetries int       `msgpack:"restart_max_retries" json:"restart_max_retries"`
	Writer            Process   `msgpack:"writer" json:"writer"`
	Started           time.Time `msgpack:"started" json:"started"`
	Updated           time.Time `msgpack:"updated" json:"updated"`
	Result            string    `msgpack:"result" json:"result"`
	Error             string    `msgpack:"error" json:"error"`
	// FirstUpgrade marks a run from a container without teamd-shim,
	// whose teamds teamd-warm stops itself at b1.
	FirstUpgrade bool `msgpack:"first_upgrade,omitempty" json:"first_upgrade,omitempty"`
}

// JournalDone is the stage of a journal whose run ended.
const JournalDone = "done"

func (*Snapshot) Kind() Kind { return KindSnapshot }
func (*Standby) Kind() Kind  { return KindStandby }
func (*Active) Kind() Kind   { return KindActive }
func (*Cutover) Kind() Kind  { return KindCutover }
func (*Journal) Kind() Kind  { return KindJournal }

func (r *Snapshot) RecordLAG() string { return r.LAG }
func (r *Standby) RecordLAG() string  { return r.LAG }
func (r *Active) RecordLAG() string   { return r.LAG }
func (r *Cutover) RecordLAG() string  { return "" }
func (r *Journal) RecordLAG() string  { return "" }

func (r *Snapshot) RecordEpoch() uint64 { return r.Epoch }
func (r *Standby) RecordEpoch() uint64  { return r.Epoch }
func (r *Active) RecordEpoch() uint64   { return r.Epoch }
func (r *Cutover) RecordEpoch() uint64  { return r.ToEpoch }
func (r *Journal) RecordEpoch() uint64  { return r.ToEpoch }

// NewRecord returns an empty record of kind k, or nil if k is not a kind.
func NewRecord(k Kind) Record {
	switch k {
	case KindSnapshot:
		return new(Snapshot)
	case KindStandby:
		return new(Standby)
	case KindActive:
		return new(Active)
	case KindCutover:
		return new(Cutover)
	case KindJournal:
		return new(Journal)
	}
	return nil
}

func checkHeader(schema int, lag string, epoch uint64) error {
	if schema != SchemaVersion {
		return fieldErr("schema", "got %d, want %d", schema, SchemaVersion)
	}
	if !ValidLAGName(lag) {
		return fieldErr("lag", "%q is not a LAG name (1-15 of A-Z a-z 0-9 _ . -)", lag)
	}
	if epoch == 0 {
		return fieldErr("epoch", "missing (must be 1 or more)")
	}
	return nil
}

func checkDigest(d string) error {
	if d == "" {
		return fieldErr("config_digest", "missing")
	}
	return nil
}

// validPortState reports whether s is a state teamd gives a port.
func validPortState(s string) bool {
	switch s {
	case "current", "expired", "defaulted", "disabled":
		return true
	}
	return false
}

// Validate implements Record.
func (r *Snapshot) Validate() error {
	if err := checkHeader(r.Schema, r.LAG, r.Epoch); err != nil {
		return err
	}
	if err := checkDigest(r.ConfigDigest); err != nil {
		return err
	}
	if r.TakenMono <= 0 {
		return fieldErr("taken_mono", "missing")
	}
	at := func(i int, field string) string { return fmt.Sprintf("members[%d].%s", i, field) }
	if i, ok := r.Members.duplicate(); ok {
		return fieldErr(at(i, "name"), "%q listed twice", r.Members[i].Name)
	}
	for i, m := range r.Members {
		if m.Name == "" {
			return fieldErr(at(i, "name"), "missing")
		}
		if !validPortState(m.State) {
			return fieldErr(at(i, "state"), "%q, want current, expired, defaulted or disabled", m.State)
		}
		if len(m.LastRx) != 0 {
			if err := CheckLACPDU(m.LastRx); err != nil {
				return fieldErr(at(i, "last_rx"), "%v", err)
			}
		}
	}
	return nil
}

// Validate implements Record.
func (r *Standby) Validate() error {
	if err := checkHeader(r.Schema, r.LAG, r.Epoch); err != nil {
		return err
	}
	if err := checkDigest(r.ConfigDigest); err != nil {
		return err
	}
	if r.ReadyMono <= 0 {
		return fieldErr("ready_mono", "missing")
	}
	for i, m := range r.Members {
		if m.Name == "" {
			return fieldErr(fmt.Sprintf("members[%d].name", i), "missing")
		}
	}
	return nil
}

// Validate implements Record.
func (r *Active) Validate() error {
	if err := checkHeader(r.Schema, r.LAG, r.Epoch); err != nil {
		return err
	}
	if err := checkDigest(r.ConfigDigest); err != nil {
		return err
	}
	if !r.Path.valid() {
		return fieldErr("path", "%q, want cold, warm-start, snapshot, deadline, restart or failover", r.Path)
	}
	if r.SinceMono <= 0 {
		return fieldErr("since_mono", "missing")
	}
	if r.Path == PathSnapshot && r.FromEpoch == 0 {
		return fieldErr("from_epoch", "missing for path snapshot")
	}
	return nil
}

// Validate implements Record.
func (r *Cutover) Validate() error {
	if r.Schema != SchemaVersion {
		return fieldErr("schema", "got %d, want %d", r.Schema, SchemaVersion)
	}
	if r.FromEpoch == 0 {
		return fieldErr("from_epoch", "missing")
	}
	if r.ToEpoch != r.FromEpoch+1 {
		return fieldErr("to_epoch", "got %d, want from_epoch+1 = %d", r.ToEpoch, r.FromEpoch+1)
	}
	if r.StartedMono <= 0 {
		return fieldErr("started_mono", "missing")
	}
	if r.DeadlineMono <= r.StartedMono {
		return fieldErr("deadline_mono", "not after started_mono")
	}
	if r.Window < 0 {
		return fieldErr("window", "%d is negative", r.Window)
	}
	if r.Window > 0 && len(r.LAGs) == 0 {
		return fieldErr("window", "waves of %d need the LAGs' order, and lags is empty", r.Window)
	}
	for i, l := range r.LAGs {
		if !ValidLAGName(l) {
			return fieldErr(fmt.Sprintf("lags[%d]", i), "%q is not a LAG name", l)
		}
	}
	return nil
}

// Validate implements Record.
func (r *Journal) Validate() error {
	switch {
	case r.Schema != SchemaVersion:
		return fieldErr("schema", "got %d, want %d", r.Schema, SchemaVersion)
	case r.Operation != "upgrade" && r.Operation != "rollback":
		return fieldErr("operation", "%q, want upgrade or rollback", r.Operation)
	case r.Container == "" || r.Backup == "" || r.Container == r.Backup:
		return fieldErr("backup", "container %q and backup %q: want two names", r.Container, r.Backup)
	case r.OldID == "":
		return fieldErr("old_id", "missing")
	case r.FromEpoch == 0:
		return fieldErr("from_epoch", "missing")
	case r.ToEpoch != r.FromEpoch+1:
		return fieldErr("to_epoch", "got %d, want from_epoch+1 = %d", r.ToEpoch, r.FromEpoch+1)
	case r.Stage == "":
		return fieldErr("stage", "missing")
	case r.Stage == JournalDone && r.Result == "":
		return fieldErr("result", "missing for stage done")
	}
	return nil
}

// FileName is the record file name for kind k of LAG lag: "<lag>.<kind>",
// or the kind alone for a global kind ("cutover", "journal").
func FileName(lag string, k Kind) string {
	if k.Global() {
		return k.String()
	}
	return lag + "." + k.String()
}

// RecordFileName is FileName for rec.
func RecordFileName(rec Record) string { return FileName(rec.RecordLAG(), rec.Kind()) }

// ParseFileName is the inverse of FileName; ok is false for names that are
// not record files (temp files, teamd's own files, anything else).
func ParseFileName(name string) (lag string, k Kind, ok bool) {
	if k, ok := ParseKind(name); ok && k.Global() {
		return "", k, true
	}
	for i := len(name) - 1; i > 0; i-- {
		if name[i] == '.' {
			k, ok := ParseKind(name[i+1:])
			if !ok || k.Global() || !ValidLAGName(name[:i]) {
				return "", 0, false
			}
			return name[:i], k, true
		}
	}
	return "", 0, false
}
