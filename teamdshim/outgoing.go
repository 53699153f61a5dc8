package teamdshim

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/proto"
)

// outgoing watches the LACPDUs on a LAG's members: those this host sends,
// to confirm that teamd transmits after the takeover signal, and those the
// partner sends, which a waiting standby's teamd may have become ready on
// (heard). The sockets are opened when the shim starts waiting for its
// teamd to be ready, so that by the takeover signal teamd's first PDU
// cannot slip past.
//
// A goroutine per member reads the frames as they come, until pause: a
// ready standby only needs to know, at its looks, when the last PDU went
// out, and each of its members carries two PDUs a period. Paused, the
// frames wait in the kernel's queue, latest reads them, and wait reads on
// as they come. At 128 LAGs these wakeups of the waiting standbys, with
// their looks four times a second (see nextLook), were a fifth of the
// product's CPU in a handoff (BENCHMARKS.md).
type outgoing struct {
	members []string
	conns   []*lacpsock.Conn
	notify  chan struct{} // a frame went out; capacity 1
	heard   chan struct{} // a partner's LACPDU came in; capacity 1
	log     *slog.Logger

	paused  bool           // owned by the shim's goroutine, as are pause, resume and drain
	readers sync.WaitGroup // the reading goroutines
	buf     []byte         // drain's

	mu   sync.Mutex
	last map[string]time.Time // guarded by mu: latest outgoing LACPDU per member
}

// watchOutgoing opens a socket per member. A member whose socket cannot be
// opened (no CAP_NET_RAW, say) is logged and left out of the confirmation.
func watchOutgoing(members []string, log *slog.Logger) *outgoing {
	o := &outgoing{members: members, notify: make(chan struct{}, 1), heard: make(chan struct{}, 1), log: log, last: map[string]time.Time{}}
	for _, m := range members {
		c, err := lacpsock.Watch(m)
		if err != nil {
			log.Warn("cannot watch the member's outgoing PDUs; takeover on it will not be confirmed", "member", m, "err", err)
			continue
		}
		o.conns = append(o.conns, c)
	}
	o.startReaders()
	return o
}

func (o *outgoing) startReaders() {
	for _, c := range o.conns {
		o.readers.Add(1)
		go o.read(c)
	}
}

// read reads c until it is closed or paused.
func (o *outgoing) read(c *lacpsock.Conn) {
	defer o.readers.Done()
	buf := make([]byte, 1600)
	for {
		fr, err := c.Read(buf)
		if err != nil {
			return
		}
		o.frame(c.Name(), fr)
	}
}

func (o *outgoing) frame(member string, fr lacpsock.Frame) {
	if err := proto.CheckLACPDU(fr.Data); err != nil {
		return
	}
	if !fr.Outgoing {
		select {
		case o.heard <- struct{}{}:
		default:
		}
		return
	}
	o.sent(member, fr.At)
}

// sent records a PDU that left member at at.
func (o *outgoing) sent(member string, at time.Time) {
	o.mu.Lock()
	if at.After(o.last[member]) {
		o.last[member] = at
	}
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// pause stops the reading of frames as they come, and narrows the sockets
// to the frames this host sends (a partner's PDU no longer prompts
// anything once teamd is ready).
func (o *outgoing) pause() {
	if o.paused {
		return
	}
	o.paused = true
	for _, c := range o.conns {
		// A deadline passed ends a blocked read at once.
		if err := c.SetReadDeadline(time.Now()); err != nil {
			o.log.Warn("pausing the member's PDU watch", "member", c.Name(), "err", err)
		}
	}
	o.readers.Wait()
	for _, c := range o.conns {
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			o.log.Warn("pausing the member's PDU watch", "member", c.Name(), "err", err)
		}
		if err := c.SentOnly(); err != nil {
			o.log.Warn("narrowing the member's PDU watch", "member", c.Name(), "err", err)
		}
	}
}

// resume reads the frames as they come again, those queued first.
func (o *outgoing) resume() {
	if o.paused {
		o.paused = false
		o.startReaders()
	}
}

// drain reads what the paused sockets have queued. A socket that lost
// frames, or cannot be read, counts as having seen a PDU go out just now:
// what is unknown must never pass for quiet.
func (o *outgoing) drain() {
	if !o.paused {
		return
	}
	if o.buf == nil {
		o.buf = make([]byte, 1600)
	}
	for _, c := range o.conns {
		lost, err := c.Drain(o.buf, func(fr lacpsock.Frame) { o.frame(c.Name(), fr) })
		if lost || err != nil {
			o.log.Warn("the member's PDU watch missed frames; counting one as sent now", "member", c.Name(), "lost", lost, "err", err)
			o.sent(c.Name(), time.Now())
		}
	}
}

// wait waits until a PDU left on every watched member at or after since,
// and returns when the last of those went out.
func (o *outgoing) wait(since time.Time, timeout time.Duration, gone <-chan struct{}) (time.Time, error) {
	if len(o.conns) == 0 {
		return time.Time{}, fmt.Errorf("no member is watched")
	}
	o.resume()
	expire := time.After(timeout)
	for {
		latest, missing := o.check(since)
		if missing == "" {
			return latest, nil
		}
		select {
		case <-o.notify:
		case <-gone:
			return time.Time{}, errExited
		case <-expire:
			return time.Time{}, fmt.Errorf("no PDU from teamd on %s within %v of the takeover signal", missing, timeout)
		}
	}
}

func (o *outgoing) check(since time.Time) (latest time.Time, missing string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.conns {
		at, ok := o.last[c.Name()]
		if !ok || at.Before(since) {
			return time.Time{}, c.Name()
		}
		if at.After(latest) {
			latest = at
		}
	}
	return latest, ""
}

// latest is when the last PDU left any watched member; zero if none did.
func (o *outgoing) latest() time.Time {
	o.drain()
	o.mu.Lock()
	defer o.mu.Unlock()
	var t time.Time
	for _, at := range o.last {
		if at.After(t) {
			t = at
		}
	}
	return t
}

// covers reports whether o watches exactly these members, each of them.
func (o *outgoing) covers(members []string) bool {
	return o != nil && len(o.conns) == len(members) && slices.Equal(o.members, members)
}

func (o *outgoing) close() {
	for _, c := range o.conns {
		c.Close()
	}
}
