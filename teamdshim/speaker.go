package teamdshim

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// A standby takes over without a snapshot only on evidence that the old
// speaker is silent, never on the cutover record alone (the supervisor may
// have died before it told the old container to stop). Both containers
// share the network namespace, so a passive standby sees the evidence
// itself:
//
//   - the wire: every LACPDU that leaves a member (before the takeover it
//     is the old teamd's: this one is passive). A speaker sends one per
//     period on every member; none for 1.5 periods on any member means none
//     is sending.
//   - the kernel: /proc/net/packet lists the namespace's packet sockets. A
//     teamd has one per member port (ethertype 0x8809, bound to the port),
//     closed when it exits. None but this shim's own teamd's on every
//     member means the old teamd is gone.
//
// The wire is watched all along: a ready standby's member sockets queue
// the PDUs that leave, and each look reads them (outgoing.pause). The
// sockets are read only when the wire has been quiet for a while: before
// the cutover for three quarters of the proof (a little more than a
// period), which a speaking teamd never reaches, so that standbys waiting
// for a cutover do not read /proc twice a second each (at 64 LAGs that
// competed with the running teamds for the CPU); after it for a period,
// on the second look in a row that finds it so (look); past the deadline
// for a third of the proof (half a fast period: the old teamd's exit is
// found fast).

// silenceProof is how long no PDU may leave any member before the old
// speaker counts as silent: one and a half of the period the partner asks
// for (fast 1 s, slow 30 s).
func silenceProof(st *teamd.State) time.Duration {
	if st.PartnerAsksFast() {
		return 1500 * time.Millisecond
	}
	return 45 * time.Second
}

// alignPeriod is the period an old shim aligns its handoff on (see
// awaitRound), the partner's fast period; 0 for a slow-rate LAG, whose
// 30 s period and 90 s budget make waiting for its next PDU pointless.
// A standby's deadline allows for it.
func alignPeriod(proof time.Duration) time.Duration {
	if period := proof * 2 / 3; period <= time.Second {
		return period
	}
	return 0
}

// failoverProof is the proof a failover before any cutover needs while the
// old teamd still holds its sockets (frozen, or only slow): two periods,
// not one and a half. Nothing has told that teamd to stop, and a busy
// switch delays its PDUs (gaps of 1.76 s seen at 64 LAGs on two cores,
// while the standbys started); the peer's 3 s still leave room.
func failoverProof(proof time.Duration) time.Duration { return proof * 4 / 3 }

// evidence is what a standby knows of the old speaker at one moment.
type evidence struct {
	watched bool          // outgoing PDUs are watched on every member
	quiet   time.Duration // since the last PDU that left a member, or since the watch began
	// sockets: the packet sockets could be read; foreign is how many
	// Slow Protocols sockets on the members are not this teamd's.
	sockets bool
	foreign int
}

// silent says whether the evidence proves the old speaker silent, and why
// in words for the logs and .active's note.
func (ev evidence) silent(proof time.Duration) (bool, string) {
	switch {
	case ev.sockets && ev.foreign == 0:
		return true, "the old teamd's LACP sockets are gone (it has exited)"
	case ev.watched && ev.quiet >= proof:
		return true, fmt.Sprintf("no LACPDU left the members for %v", ev.quiet.Round(time.Millisecond))
	case ev.watched:
		return false, fmt.Sprintf("the old teamd sent a LACPDU %v ago", ev.quiet.Round(time.Millisecond))
	case ev.sockets:
		return false, fmt.Sprintf("the old teamd still has %d LACP sockets open", ev.foreign)
	}
	return false, "no evidence: neither the members' outgoing PDUs nor the packet sockets can be seen"
}

// known reports whether there is any evidence to go by.
func (ev evidence) known() bool { return ev.watched || ev.sockets }

// gather collects the evidence now: the wire always, the sockets once the
// wire has been quiet for socketsAfter (or cannot be watched).
func (s *Shim) gather(socketsAfter time.Duration) evidence {
	w := s.sb
	var ev evidence
	if s.wireWatched() {
		ev.watched = true
		last := w.confirm.latest()
		if last.Before(w.watchSince) {
			last = w.watchSince
		}
		w.lastOut = last
		ev.quiet = time.Since(last)
	}
	if ev.watched && ev.quiet < socketsAfter {
		return ev
	}
	n, err := foreignSlowSockets(s.teamd.pid(), w.ifindexes)
	if err != nil {
		if !w.socketsLogged {
			w.socketsLogged = true
			s.log.Warn("cannot read the packet sockets; the old speaker's silence is judged by the wire alone", "err", err)
		}
		return ev
	}
	ev.sockets, ev.foreign = true, n
	return ev
}

// wireWatched reports whether a waiting standby sees the PDUs that leave
// every member.
func (s *Shim) wireWatched() bool {
	return s.sb.confirm != nil && len(s.sb.confirm.conns) == len(s.members)
}

// foreignSlowSockets counts the Slow Protocols packet sockets bound to the
// given interfaces that process pid does not hold.
func foreignSlowSockets(pid int, ifindexes map[int]bool) (int, error) {
	mine, err := socketInodes(pid)
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/net/packet")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	socks, err := parsePacketSockets(f)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ps := range socks {
		if ps.proto == proto.EtherTypeSlow && ifindexes[ps.ifindex] && !mine[ps.inode] {
			n++
		}
	}
	return n, nil
}

type packetSocket struct {
	proto   uint16
	ifindex int
	inode   uint64
}

// parsePacketSockets reads /proc/net/packet:
//
//	sk       RefCnt Type Proto  Iface R Rmem   User   Inode
//	000000.. 3      3    8809   5     1 0      0      123456
func parsePacketSockets(r io.Reader) ([]packetSocket, error) {
	var out []packetSocket
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return nil, fmt.Errorf("/proc/net/packet: empty")
	}
	if h := strings.Fields(sc.Text()); len(h) < 9 || h[3] != "Proto" || h[4] != "Iface" || h[8] != "Inode" {
		return nil, fmt.Errorf("/proc/net/packet: unknown header %q", sc.Text())
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 {
			continue
		}
		p, err1 := strconv.ParseUint(f[3], 16, 16)
		idx, err2 := strconv.Atoi(f[4])
		ino, err3 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("/proc/net/packet: bad line %q", sc.Text())
		}
		out = append(out, packetSocket{proto: uint16(p), ifindex: idx, inode: ino})
	}
	return out, sc.Err()
}

// socketInodes lists the inodes of the sockets process pid holds.
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[ino] = true
			}
		}
	}
	return out, nil
}
