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
//   - standby: teamd runs passive (-w). Once its control socket answers and
//     every member hears the partner, the shim writes <lag>.standby and
//     watches the directory. A valid snapshot of the previous epoch for its
//     LAG and config makes it send the takeover signal, confirm teamd
//     transmits, and write <lag>.active. If the supervisor's cutover record
//     is there and no valid snapshot arrives within Options.Budget, it takes
//     over anyway (path "deadline").
//
// # Invariant
//
// At most one LACP speaker per LAG, and never none for longer than the
// deadline: a standby transmits only after the old teamd has exited (a valid
// snapshot) or once the budget after the cutover is spent, and the old shim
// kills its teamd within StopTimeout of the cutover, so that a deadline
// takeover rarely overlaps a live old speaker. Both speak with the same
// identity and the partner state learned on the wire.
//
// # Epochs
//
// The supervisor gives each new container the next epoch. A standby of
// epoch E+1 accepts only a snapshot of epoch E taken after the cutover; a
// shim that finds a <lag>.active of its own epoch took over before and comes
// back active (path "restart"), never passive; one that finds a newer epoch
// refuses to start.
package teamdshim
