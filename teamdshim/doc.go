// Package teamdshim wraps one teamd process and plays its part in the
// handoff of a LAG from an old teamd container to a new one (the HLD's warm
// restart of teamd in LACP fast mode).
//
// A Shim starts teamd as its child, in the foreground, and is the only thing
// that signals it. Its life is an explicit state machine ([State]: new,
// starting, waiting-ready, standby, taking-over, active, handing-over,
// done); a move the machine does not allow is a [*TransitionError], and a
// failure is an [*Error] that names the state and the event. It plays one of
// two roles, chosen by Options.Role and the records already in the record
// directory:
//
//   - active: teamd transmits. The shim writes <lag>.active. On SIGUSR1 it
//     takes teamd's state over the control socket, tells teamd to stop
//     (SIGUSR1, SONiC's warm stop), waits for it to exit (SIGKILL past
//     Options.StopTimeout), collects teamd's dump files, and only then
//     writes <lag>.snapshot: its existence means the old speaker is silent.
//   - standby: teamd runs passive (-P). Once its control socket answers and
//     every member hears the partner, the shim writes <lag>.standby and
//     watches the directory. A valid snapshot of the previous epoch for its
//     LAG and config makes it send the takeover signal, confirm teamd
//     transmits, and write <lag>.active. Without one (past Options.Budget
//     after the supervisor's cutover: path "deadline"; or before any cutover
//     when the old speaker dies or freezes: path "failover") it takes over
//     only on evidence that the old speaker is silent (speaker.go).
//
// # Invariant
//
// At most one LACP speaker per LAG, and never none while one can speak:
//
//   - a standby transmits only after the old teamd has exited (a valid
//     snapshot, written once it has), or on evidence that it is silent: no
//     LACPDU left any member for 1.5 fast periods (2 before any cutover
//     while the old teamd holds its sockets), or no other process holds
//     a Slow Protocols socket on them; a record alone is never proof;
//   - an active shim that finds a newer epoch's .active steps down
//     (fence.go) without a word on the wire;
//   - an active shim hands over only if a shim of the next epoch runs, and
//     after handing over stays until that epoch's .active appears; if every
//     shim of it goes away first, it withdraws its snapshot and takes the LAG
//     back (a warm start from the dump files it just wrote);
//   - every shim holds its LAG's liveness lock for its epoch
//     (statefile.Dir.Live): one shim per LAG and epoch in any container, and
//     the others can tell a record's writer alive from dead.
//
// Both speakers speak with the same identity and the partner state learned
// on the wire, so the partner cannot tell them apart; only timing can
// (proto.Speakers), which is how the tests look for two.
//
// # Epochs
//
// The supervisor gives each new container the next epoch. A standby of
// epoch E+1 accepts only a snapshot of epoch E taken after the cutover; a
// shim that finds a <lag>.active of its own epoch took over before and comes
// back active (path "restart"), never passive; one that finds a newer epoch
// refuses to start.
package teamdshim
