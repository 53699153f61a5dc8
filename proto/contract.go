package proto

import "encoding/json"

// The contract between the supervisor and the shims of the container it
// starts: the environment a teamd container gives its shims. The supervisor
// sets the role and the epoch of a new container; teammgrd passes its
// environment on to teamd, and so to a shim installed as /usr/bin/teamd.
const (
	EnvRole           = "TEAMDWARM_ROLE"            // active | standby
	EnvEpoch          = "TEAMDWARM_EPOCH"           // 1, 2, ...
	EnvDir            = "TEAMDWARM_DIR"             // record directory
	EnvRunDir         = "TEAMDWARM_RUN_DIR"         // teamd's run directory (socket, pid file)
	EnvTakeoverSignal = "TEAMDWARM_TAKEOVER_SIGNAL" // e.g. SIGRTMIN
	EnvBudget         = "TEAMDWARM_BUDGET"          // e.g. 1200ms
	EnvStopTimeout    = "TEAMDWARM_STOP_TIMEOUT"    // e.g. 1s
	EnvContainer      = "TEAMDWARM_CONTAINER"       // container name for the records
	EnvTeamdProfile   = "TEAMDWARM_TEAMD_PROFILE"   // what the wrapped teamd is declared to be: stock, sonic, hld
)

// Role is what a shim is started as.
type Role string

// The roles.
const (
	RoleActive  Role = "active"  // teamd transmits from the start
	RoleStandby Role = "standby" // teamd starts passive and waits for the handoff
)

// StateDumps is what "teamd-shim dump LAG..." prints in a container: every
// LAG's teamd StateDump JSON as teamd gave it, or why it could not be had.
// teamd-warm reads a container's LAGs with it in one exec, not one
// teamdctl per LAG.
type StateDumps struct {
	Dumps  map[string]json.RawMessage `json:"dumps"`
	Errors map[string]string          `json:"errors,omitempty"`
}
