package statefile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/teamdwarm/teamdwarm/proto"
)

// A Hub is one watch of a record directory shared by the shims of one
// container. Its owner (the container's init) subscribes each shim for its
// LAG and passes it the pipe that Subscribe returns; WatchShared reads it.
//
// Why: an inotify instance per shim runs into fs.inotify.max_user_instances
// (128 by default, shared with every other process of the same user on the
// host) at a switch's 128 LAGs, and every shim woke on every LAG's record.
// Through a hub a container costs one instance, and a record wakes only the
// shim of its LAG, and only if it is of a kind the shim reads (the cutover,
// directory-wide, wakes every shim that reads it; the journal, the
// supervisor's own, none).
//
// The pipe carries one file name per line; a line "*" says that events were
// lost and everything must be looked at again. Only names travel: each shim
// reads and checks the records itself.
type Hub struct {
	dir  string
	mu   sync.Mutex
	subs map[*hubSub]bool
	done bool
}

// hubSub is one subscription: its pipe's write end, the kinds it carries,
// and a bounded queue, so that a shim that does not read costs the hub
// nothing.
type hubSub struct {
	lag   string
	kinds []proto.Kind // nil: all
	w     *os.File
	q     chan string
	lost  atomic.Bool // the queue overflowed: "*" follows
}

// hubQueue bounds a subscription's queue; beyond it names are dropped for
// one "*".
const hubQueue = 64

// NewHub watches dir until ctx is done; then every subscription's pipe is
// closed.
func NewHub(ctx context.Context, dir string) (*Hub, error) {
	notices, err := inotify(ctx, dir)
	if err != nil {
		return nil, err
	}
	h := &Hub{dir: dir, subs: map[*hubSub]bool{}}
	go h.route(ctx, notices)
	return h, nil
}

// AllLAGs subscribes to every record's name (of the kinds given, if any).
const AllLAGs = "*"

// wants says whether the subscription carries the name of a record of lag
// ("" for the directory-wide ones) and kind.
func (sub *hubSub) wants(lag string, kind proto.Kind) bool {
	switch {
	case sub.lag == AllLAGs:
		// Every LAG's, the journal's too: the kinds alone decide.
	case kind == proto.KindJournal:
		// The supervisor's own: no shim reads it, and it is written
		// before every stage, with every shim waiting.
		return false
	case lag != "" && lag != sub.lag:
		return false
	}
	return sub.kinds == nil || slices.Contains(sub.kinds, kind)
}

// Subscribe returns the read end of a pipe that carries the names of lag's
// records and of the cutover, of the given kinds if any are given (every
// LAG's for AllLAGs, and the journal's too if no kinds are given). The
// caller passes it on (to a child) and closes its own copy; the
// subscription ends when the reader closes it.
func (h *Hub) Subscribe(lag string, kinds ...proto.Kind) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("watch %s: subscribe %s: %w", h.dir, lag, err)
	}
	sub := &hubSub{lag: lag, kinds: slices.Clone(kinds), w: w, q: make(chan string, hubQueue)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("watch %s: the hub has stopped", h.dir)
	}
	h.subs[sub] = true
	go h.write(sub)
	return r, nil
}

func (h *Hub) route(ctx context.Context, notices <-chan notice) {
	for {
		var n notice
		select {
		case <-ctx.Done():
			h.stop()
			return
		case nn, ok := <-notices:
			if !ok {
				h.stop()
				return
			}
			n = nn
		}
		line, lag, kind := "*", "", proto.Kind(0)
		if n.err == nil && !n.rescan {
			if strings.HasPrefix(n.name, tempPrefix) {
				continue
			}
			l, k, ok := proto.ParseFileName(n.name)
			if !ok {
				continue
			}
			line, lag, kind = n.name, l, k
		}
		h.mu.Lock()
		for sub := range h.subs {
			if line != "*" && !sub.wants(lag, kind) {
				continue
			}
			select {
			case sub.q <- line:
			default:
				sub.lost.Store(true)
			}
		}
		h.mu.Unlock()
	}
}

// write feeds one subscription's pipe until its reader goes away.
func (h *Hub) write(sub *hubSub) {
	defer func() {
		h.mu.Lock()
		delete(h.subs, sub)
		h.mu.Unlock()
		sub.w.Close()
	}()
	for line := range sub.q {
		if sub.lost.Swap(false) {
			line = "*"
		}
		if _, err := sub.w.WriteString(line + "\n"); err != nil {
			return // the shim is gone (EPIPE)
		}
	}
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done = true
	for sub := range h.subs {
		close(sub.q)
		delete(h.subs, sub)
	}
}

// maxHubLine bounds one line of a hub's pipe: a record name and its
// newline.
const maxHubLine = 256

// WatchShared is WatchOnly fed by a Hub's subscription r instead of an
// inotify instance of its own. It owns r and closes it when ctx is done.
// If r ends first (the hub's owner is gone), the watch goes on with an
// inotify instance of its own, after a rescan.
func WatchShared(ctx context.Context, dir string, r *os.File, keep func(lag string, k proto.Kind) bool) (<-chan Event, error) {
	notices := make(chan notice, 16)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		r.Close() // ends a blocked read (r is non-blocking: see os.NewFile)
	}()
	go func() {
		defer close(notices)
		defer cancel()
		send := func(n notice) bool {
			select {
			case notices <- n:
				return true
			case <-ctx.Done():
				return false
			}
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, maxHubLine), maxHubLine)
		for sc.Scan() {
			n := notice{name: sc.Text()}
			if n.name == "*" {
				n = notice{rescan: true}
			} else if strings.ContainsRune(n.name, '/') {
				n = notice{err: fmt.Errorf("watch %s: the shared watch sent %q, not a file name", dir, n.name)}
			}
			if !send(n) {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		// The hub is gone: watch on alone.
		own, err := inotify(ctx, dir)
		if err != nil {
			why := sc.Err()
			if why == nil {
				why = errors.New("the shared watch ended")
			}
			send(notice{err: fmt.Errorf("%w, and %w", why, err)})
			return
		}
		if !send(notice{rescan: true}) {
			return
		}
		for n := range own {
			if !send(n) {
				return
			}
		}
	}()
	return scan(ctx, dir, keep, notices), nil
}
