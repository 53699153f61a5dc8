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
type outgoing struct {
	members []string
	conns   []*lacpsock.Conn
	notify  chan struct{} // a frame went out; capacity 1
	heard   chan struct{} // a partner's LACPDU came in; capacity 1

	mu   sync.Mutex
	last map[string]time.Time // guarded by mu: latest outgoing LACPDU per member
}

// watchOutgoing opens a socket per member. A member whose socket cannot be
// opened (no CAP_NET_RAW, say) is logged and left out of the confirmation.
func watchOutgoing(members []string, log *slog.Logger) *outgoing {
	o := &outgoing{members: members, notify: make(chan struct{}, 1), heard: make(chan struct{}, 1), last: map[string]time.Time{}}
	for _, m := range members {
		c, err := lacpsock.Watch(m)
		if err != nil {
			log.Warn("cannot watch the member's outgoing PDUs; takeover on it will not be confirmed", "member", m, "err", err)
			continue
		}
		o.conns = append(o.conns, c)
		go o.read(c)
	}
	return o
}

func (o *outgoing) read(c *lacpsock.Conn) {
	buf := make([]byte, 1600)
	for {
		fr, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := proto.ParseLACPDU(fr.Data); err != nil {
			continue
		}
		if !fr.Outgoing {
			select {
			case o.heard <- struct{}{}:
			default:
			}
			continue
		}
		o.mu.Lock()
		o.last[c.Name()] = fr.At
		o.mu.Unlock()
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
}

// wait waits until a PDU left on every watched member at or after since,
// and returns when the last of those went out.
func (o *outgoing) wait(since time.Time, timeout time.Duration, gone <-chan struct{}) (time.Time, error) {
	if len(o.conns) == 0 {
		return time.Time{}, fmt.Errorf("no member is watched")
	}
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
