package supervisor

// Stage is a step of the flow, named as in the HLD where it has a name.
type Stage string

// The stages, in order.
const (
	StagePreflight Stage = "preflight"
	StageRename    Stage = "a1"       // rename the container to its backup name
	StageStart     Stage = "a2"       // create and start the new container
	StageReady     Stage = "a3"       // wait for every .standby
	StageCutover   Stage = "b1"       // cutover record and SIGUSR1: no way back
	StageTakeover  Stage = "b2"       // wait for every .active of the new epoch
	StageCleanup   Stage = "c1"       // the backup exits and is removed
	StageRollback  Stage = "rollback" // undo a1..a3
)
