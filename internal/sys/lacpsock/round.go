package lacpsock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"golang.org/x/sys/unix"
)

// SentIn is Sent in the network namespace at nsPath (e.g.
// /proc/PID/ns/net), opened from a thread of its own that goes back to
// this process's namespace afterwards (or, if it cannot, ends with the
// goroutine).
func SentIn(nsPath, ifname string) (*Conn, error) {
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		own, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			done <- result{nil, fmt.Errorf("lacpsock: this thread's network namespace: %w", err)}
			restored = true
			return
		}
		defer own.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			done <- result{nil, fmt.Errorf("lacpsock: %w", err)}
			restored = true
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("lacpsock: enter %s: %w", nsPath, err)}
			restored = true
			return
		}
		c, err := Sent(ifname)
		restored = unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// RoundSlack is what a wait for a speaker's next round allows beyond its
// period: a busy switch delays a PDU a little.
const RoundSlack = 100 * time.Millisecond

// AwaitTurn waits for a speaker's turn in a handoff in waves: wave
// periods, then, up to a period more (and RoundSlack), until the speaker
// has sent its next periodic LACPDU on every member (NextRound), so that
// what follows starts right after it. open watches one member (Sent, or
// SentIn another namespace); the sockets are closed in the background,
// since a packet socket's close waits for an RCU grace period. The error
// says why it did not see the round: ctx ended, a member could not be
// watched, or no PDU came in time.
func AwaitTurn(ctx context.Context, wave int, period time.Duration, members []string, open func(member string) (*Conn, error)) error {
	if wave > 0 {
		select {
		case <-time.After(time.Duration(wave) * period):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var conns []*Conn
	defer func() {
		go func() {
			for _, c := range conns {
				c.Close()
			}
		}()
	}()
	for _, m := range members {
		c, err := open(m)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(ctx, period+RoundSlack)
	defer cancel()
	_, err := NextRound(ctx, conns)
	return err
}

// NextRound waits until a LACPDU has left on every one of conns (opened
// with Sent, or Watch, whose frames from the partner it skips) after it was
// called, and returns when the last of those did: the moment right after a
// speaker's periodic PDUs, when the longest time until its next one is
// ahead. It reads the conns until it returns; the caller closes them.
func NextRound(ctx context.Context, conns []*Conn) (time.Time, error) {
	if len(conns) == 0 {
		return time.Time{}, errors.New("lacpsock: no interface to watch")
	}
	since := time.Now()
	type sent struct {
		i  int
		at time.Time
	}
	ch := make(chan sent, len(conns))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, c := range conns {
		go func() {
			buf := make([]byte, 1600)
			for ctx.Err() == nil {
				fr, err := c.Read(buf)
				if err != nil {
					return
				}
				if err := proto.CheckLACPDU(fr.Data); err != nil || !fr.Outgoing || fr.At.Before(since) {
					continue
				}
				select {
				case ch <- sent{i, fr.At}:
				case <-ctx.Done():
				}
				return
			}
		}()
	}
	var last time.Time
	seen := make([]bool, len(conns))
	for n := 0; n < len(conns); {
		select {
		case s := <-ch:
			if !seen[s.i] {
				seen[s.i], n = true, n+1
				if s.at.After(last) {
					last = s.at
				}
			}
		case <-ctx.Done():
			for i, ok := range seen {
				if !ok {
					return time.Time{}, fmt.Errorf("lacpsock: no LACPDU left %s: %w", conns[i].Name(), ctx.Err())
				}
			}
		}
	}
	return last, nil
}
