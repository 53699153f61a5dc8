// Package supervisor is teamd-warm's engine: the HLD's warm upgrade (and
// rollback) of SONiC's teamd container over the Docker Engine API, as
// upgrade_docker runs it.
//
// The flow, with the HLD's step names:
//
//	preflight  lock; old container running with the shared mount; every
//	           LAG's .active current and of one epoch E; its teamd answers;
//	           record directory writable; image present; no backup container
//	a1         rename the container (teamd) to its backup name (teamd_bak)
//	a2         create the new container from the old one's settings with the
//	           new image, role standby, epoch E+1, and start it
//	a3         wait for every LAG's .standby of E+1 with the old config digest
//	b1         write cutover, send SIGUSR1 to the backup: the point of no return
//	b2/b3      wait for every LAG's .active of E+1
//	c1         wait for the backup to exit (bounded), remove it; report
//
// # Failure handling
//
// Any failure before b1, an interrupt included, rolls back completely: the
// new container is stopped and removed, the backup renamed back, and the
// LAGs, still served by the old teamds, never notice. Before b1 every
// standby's shim must still live (its liveness lock); a paused new
// container is unpaused. After b1 the flow is not interrupted: each LAG
// either takes over from its snapshot or, if the snapshot is late or bad,
// on its own once the old speaker is silent (the shim's job); a LAG that
// failed over before the cutover is rolled forward; if no LAG was taken
// over and the old container still serves every one (the new one went
// away), the run is undone. The report says which path each LAG took and
// whether its new teamd was seen transmitting, and Upgrade returns an
// error if any LAG failed.
//
// # Journal and recovery
//
// The run's journal record (journal.go) is written before each step, so
// that a run killed at any point can be told apart from one in progress
// (the lock) and from one that ended. Status reads it with the records and
// the shims' liveness locks and says who serves each LAG and what to do;
// a new run over an unfinished one is refused; Recover (recover.go)
// finishes a run past its cutover and undoes one before it, each step only
// if it is still to be done.
//
// The supervisor speaks Docker and reads records; it knows nothing of LACP
// beyond what teamd's StateDump says about a LAG's rate and members.
//
// # Files
//
// The flow's code follows its stages: run.go (a run's bookkeeping),
// preflight.go, prepare.go (a1..a3 and the rollback), cutover.go (b1..c1),
// first.go (the first upgrade, from a container whose teamds run without
// teamd-shim), report.go (the report and its gap arithmetic), journal.go
// and recover.go, status.go.
//
// # Testing
//
// Engine is the part of the Docker Engine API the flow uses; package
// enginetest implements it in memory, with hooks for what the containers'
// shims do, so that every path of the flow can be tested without dockerd.
package supervisor
