package teamdshim

import (
	"fmt"
	"slices"
)

// State is where a shim is in its life. A shim moves only along the
// transitions below; every other move is a *TransitionError.
//
//	new ──start──▶ starting ──answered──▶ active ──SIGUSR1──▶ handing-over ──snapshot written──▶ done
//	                  │                     ▲  │  (or SIGTERM with a ready standby)
//	                  │                     │  └──fenced (a newer epoch took over)──▶ done
//	                  └─answered─▶ waiting-ready ──ready──▶ standby ──snapshot|deadline|failover──▶ taking-over
//	                    (standby, or a   └──────────ready (a passive restart)─────────────────────────▶│
//	                     passive restart)                       active ◀──────transmitting──────────────┘
//
// From every state after new, "teamd exited" leads to done.
type State uint8

// The states.
const (
	StateNew          State = iota // the LAG's lock and records are being checked; teamd is not started
	StateStarting                  // teamd started; its control socket does not answer yet
	StateWaitingReady              // standby: teamd is passive; not every member hears the partner yet
	StateStandby                   // standby: .standby written; waiting for the cutover and the snapshot
	StateTakingOver                // the takeover signal is sent; teamd's first PDUs are awaited
	StateActive                    // teamd is the LAG's speaker; .active written
	StateHandingOver               // SIGUSR1: teamd is stopping; the snapshot follows
	StateDone                      // teamd exited, or the LAG was handed over
)

var stateNames = [...]string{"new", "starting", "waiting-ready", "standby", "taking-over", "active", "handing-over", "done"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Event is what moves a shim from one state to the next.
type Event string

// The events.
const (
	EventStart         Event = "start"
	EventAnswered      Event = "control socket answered"
	EventReady         Event = "every member hears the partner"
	EventCutover       Event = "cutover"
	EventSnapshot      Event = "snapshot"
	EventDeadline      Event = "deadline"
	EventFailover      Event = "the old speaker fell silent"
	EventFenced        Event = "a newer epoch took over"
	EventTransmits     Event = "takeover done"
	EventHandOver      Event = "SIGUSR1"
	EventStopToStandby Event = "SIGTERM with a ready standby"
	EventHandedOver    Event = "snapshot written"
	EventTeamdExited   Event = "teamd exited"
)

// transitions lists, per state, the states it may move to.
var transitions = [...][]State{
	StateNew:          {StateStarting},
	StateStarting:     {StateWaitingReady, StateActive, StateDone},
	StateWaitingReady: {StateStandby, StateTakingOver, StateDone}, // taking over: a passive restart
	StateStandby:      {StateTakingOver, StateDone},
	StateTakingOver:   {StateActive, StateDone},
	StateActive:       {StateHandingOver, StateDone}, // done: teamd exited, or fenced
	StateHandingOver:  {StateDone},
	StateDone:         nil,
}

// TransitionError is a move the state machine does not allow: a bug, or an
// event that came where it cannot.
type TransitionError struct {
	From, To State
	Event    Event
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("no transition from %s to %s on %q", e.From, e.To, e.Event)
}

// Error is how a shim fails: the state it was in, the event it was
// handling, and why.
type Error struct {
	LAG   string
	State State
	Event Event
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: in state %s, on %q: %v", e.LAG, e.State, e.Event, e.Err)
}

// Unwrap gives the cause: errors.Is(err, ErrFenced) and the like work
// through an *Error.
func (e *Error) Unwrap() error { return e.Err }

// enter moves the shim to state to on ev.
func (s *Shim) enter(to State, ev Event) error {
	if int(s.state) >= len(transitions) || !slices.Contains(transitions[s.state], to) {
		return &TransitionError{From: s.state, To: to, Event: ev}
	}
	s.log.Debug("state", "from", s.state, "to", to, "event", ev)
	s.state = to
	return nil
}

// fail is err as an *Error of the shim's current state and ev.
func (s *Shim) fail(ev Event, err error) error {
	return &Error{LAG: s.lag, State: s.state, Event: ev, Err: err}
}
