package inspect

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
)

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// WriteTable prints one line per item: the directory view (teamd-state show DIR).
func WriteTable(w io.Writer, items []Item) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAG\tROLE\tEPOCH\tAGE\tMEMBERS\tDETAIL")
	for _, it := range items {
		lag, role, epoch, age, members := it.LAG, it.Kind, "-", "-", "-"
		detail := ""
		switch {
		case it.Error != "":
			detail = "INVALID: " + it.Error
		case it.Type == TypeRecord:
			epoch = fmt.Sprint(it.Epoch)
			age = fmt.Sprintf("%.1fs", it.AgeSeconds)
			if it.LAG != "" {
				members = fmt.Sprint(it.Members)
			}
			detail = Detail(it.Record)
		case it.Type == TypePortDump:
			role, lag = "teamd port dump", "-"
			detail = portName(it.Path) + ": partner " + it.PortDump.Actor.String()
		case it.Type == TypeLAGDump:
			role, lag = "teamd LAG dump", portName(it.Path)
			members = fmt.Sprint(it.Members)
			detail = "carrier " + yesno(it.LAGDump.Carrier)
		}
		if lag == "" {
			lag = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", lag, role, epoch, age, members, detail)
	}
	return tw.Flush()
}

func portName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// Detail is a record's one-line description, as the directory table shows.
func Detail(rec proto.Record) string {
	switch r := rec.(type) {
	case *proto.Snapshot:
		return "teamd " + r.TeamdStop
	case *proto.Standby:
		return "ready, container " + r.Writer.Container
	case *proto.Active:
		s := "path " + string(r.Path)
		if r.FromEpoch != 0 {
			s += fmt.Sprintf(" from epoch %d", r.FromEpoch)
		}
		if r.Teamd != nil {
			s += ", teamd " + r.Teamd.Profile
		}
		if r.Kernel.Read() {
			s += fmt.Sprintf(", kernel: %d/%d ports enabled, carrier %s", enabledPorts(r.Kernel), len(r.Kernel.Ports), yesno(r.Kernel.Carrier))
		}
		if r.Note != "" {
			s += " (" + r.Note + ")"
		}
		return s
	case *proto.Cutover:
		return fmt.Sprintf("epoch %d -> %d, %d LAGs, deadline +%.0fms", r.FromEpoch, r.ToEpoch, len(r.LAGs),
			float64(r.DeadlineMono-r.StartedMono)/1e6)
	case *proto.Journal:
		return JournalLine(r)
	}
	return ""
}

// JournalLine says in a line what run a journal records and where it
// stands.
func JournalLine(j *proto.Journal) string {
	s := fmt.Sprintf("%s of %s to %s, epoch %d -> %d, ", j.Operation, j.Container, j.Image, j.FromEpoch, j.ToEpoch)
	if j.Stage == proto.JournalDone {
		s += "ended " + j.Result
	} else {
		s += "at " + j.Stage
	}
	if j.Error != "" {
		s += " (" + j.Error + ")"
	}
	return s
}

func enabledPorts(k *proto.KernelLAG) int {
	n := 0
	for _, p := range k.Ports {
		if p.Enabled {
			n++
		}
	}
	return n
}

// writeTeamdKernel prints the wrapped teamd and the kernel's LAG, where a
// record has them.
func writeTeamdKernel(w io.Writer, t *proto.TeamdInfo, kernels ...namedKernel) {
	if t != nil {
		fmt.Fprintf(w, "teamd:\n  program: %s\n  version: %s\n  profile: %s\n", t.Program, t.Version, t.Profile)
	}
	for _, k := range kernels {
		if k.k == nil {
			continue
		}
		fmt.Fprintf(w, "%s:\n", k.title)
		if k.k.Err != "" {
			fmt.Fprintf(w, "  unreadable: %s\n", k.k.Err)
			continue
		}
		fmt.Fprintf(w, "  %s: ifindex %d, up %s, carrier %s\n", k.k.Name, k.k.Ifindex, yesno(k.k.Up), yesno(k.k.Carrier))
		for _, p := range k.k.Ports {
			fmt.Fprintf(w, "  %s: ifindex %d, enabled %s, link %s, carrier %s\n", p.Name, p.Ifindex, yesno(p.Enabled), yesno(p.LinkUp), yesno(p.Carrier))
		}
	}
}

type namedKernel struct {
	title string
	k     *proto.KernelLAG
}

// WriteItem prints one file in detail, in the layout of teamdctl's
// "state view".
func WriteItem(w io.Writer, it Item) {
	switch it.Type {
	case TypePortDump:
		fmt.Fprintf(w, "%s: teamd per-port dump (the last LACPDU received from the partner)\n", it.Path)
		fmt.Fprintf(w, "  source: %s\n", it.PortDump.Src)
		writeInfo(w, "  ", "partner lacpdu info (the partner's actor)", it.PortDump.Actor)
		writeInfo(w, "  ", "actor lacpdu info (us, as the partner saw us)", it.PortDump.Partner)
	case TypeLAGDump:
		fmt.Fprintf(w, "%s: teamd LAG dump\n", it.Path)
		fmt.Fprintf(w, "  carrier: %s\n", yesno(it.LAGDump.Carrier))
		fmt.Fprintf(w, "ports:\n")
		for _, p := range it.LAGDump.Ports {
			fmt.Fprintf(w, "  %s\n    enabled: %s\n", p.Name, yesno(p.Enabled))
		}
	case TypeRecord:
		writeRecord(w, it)
	}
}

func writeInfo(w io.Writer, indent, title string, i proto.Info) {
	fmt.Fprintf(w, "%s%s:\n", indent, title)
	fmt.Fprintf(w, "%s  system priority: %d\n", indent, i.SystemPriority)
	fmt.Fprintf(w, "%s  system: %s\n", indent, i.System)
	fmt.Fprintf(w, "%s  key: %d\n", indent, i.Key)
	fmt.Fprintf(w, "%s  port priority: %d\n", indent, i.PortPriority)
	fmt.Fprintf(w, "%s  port: %d\n", indent, i.Port)
	fmt.Fprintf(w, "%s  state: %#02x (%s)\n", indent, uint8(i.State), i.State)
}

func writeRecord(w io.Writer, it Item) {
	fmt.Fprintf(w, "%s: %s record, epoch %d, %.1fs old\n", it.Path, it.Kind, it.Epoch, it.AgeSeconds)
	switch r := it.Record.(type) {
	case *proto.Snapshot:
		fmt.Fprintf(w, "setup:\n  lag: %s\n  team mac: %s\n  config digest: %s\n  written by: %s\n  teamd: %s\n",
			r.LAG, r.TeamMAC, r.ConfigDigest, writer(r.Writer), r.TeamdStop)
		fmt.Fprintf(w, "runner:\n  active: %s\n  fast rate: %s\n  sys_prio: %d\n", yesno(r.Runner.Active), yesno(r.Runner.FastRate), r.Runner.SysPrio)
		fmt.Fprintf(w, "ports:\n")
		for _, m := range r.Members {
			fmt.Fprintf(w, "  %s\n    ifindex: %d\n    mac: %s\n", m.Name, m.Ifindex, m.MAC)
			fmt.Fprintf(w, "    runner:\n      aggregator ID: %d%s\n      selected: %s\n      state: %s\n",
				m.AggregatorID, map[bool]string{true: ", Selected"}[m.Selected], yesno(m.Selected), m.State)
			writeInfo(w, "      ", "actor lacpdu info", m.Actor)
			writeInfo(w, "      ", "partner lacpdu info", m.Partner)
			fmt.Fprintf(w, "      last PDU sent no later than: %s\n", m.LastTx.Format("15:04:05.000"))
			if len(m.LastRx) > 0 {
				fmt.Fprintf(w, "      last PDU received: %d bytes saved\n", len(m.LastRx))
			}
		}
		writeTeamdKernel(w, r.Teamd, namedKernel{"kernel when teamd had stopped", r.Kernel})
	case *proto.Standby:
		fmt.Fprintf(w, "setup:\n  lag: %s\n  config digest: %s\n  written by: %s\n  ready since: %s\n",
			r.LAG, r.ConfigDigest, writer(r.Writer), r.Ready.Format("15:04:05.000"))
		fmt.Fprintf(w, "ports:\n")
		for _, m := range r.Members {
			fmt.Fprintf(w, "  %s\n    state: %s\n", m.Name, m.State)
			writeInfo(w, "    ", "partner lacpdu info", m.Partner)
		}
		writeTeamdKernel(w, r.Teamd)
	case *proto.Active:
		fmt.Fprintf(w, "setup:\n  lag: %s\n  config digest: %s\n  written by: %s\n  path: %s\n  since: %s\n",
			r.LAG, r.ConfigDigest, writer(r.Writer), r.Path, r.Since.Format("15:04:05.000"))
		if r.FromEpoch != 0 {
			fmt.Fprintf(w, "  from epoch: %d\n", r.FromEpoch)
		}
		if r.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", r.Note)
		}
		t := r.Timings
		if t.SignalSent != 0 {
			fmt.Fprintf(w, "timings:\n")
			base := t.CutoverSeen
			if base == 0 {
				base = t.SnapshotSeen
			}
			for _, s := range []struct {
				name string
				at   int64
			}{{"cutover seen", t.CutoverSeen}, {"snapshot seen", t.SnapshotSeen}, {"takeover signal sent", t.SignalSent}, {"teamd confirmed transmitting", t.Confirmed}} {
				if s.at != 0 {
					fmt.Fprintf(w, "  %s: +%.3fms\n", s.name, float64(s.at-base)/1e6)
				}
			}
		}
		fmt.Fprintf(w, "ports: %s\n", strings.Join(r.Members, " "))
		writeTeamdKernel(w, r.Teamd, namedKernel{"kernel before the takeover", r.KernelBefore}, namedKernel{"kernel", r.Kernel})
		if r.KernelBefore.Read() && r.Kernel.Read() {
			if d := r.KernelBefore.Diff(r.Kernel); len(d) > 0 {
				fmt.Fprintf(w, "kernel changed by the takeover: %s\n", strings.Join(d, ", "))
			} else {
				fmt.Fprintf(w, "kernel unchanged by the takeover\n")
			}
		}
	case *proto.Journal:
		fmt.Fprintf(w, "run:\n  operation: %s\n  container: %s (backup name %s)\n  image: %s\n  old container: %s (%s)\n  new container: %s\n  epochs: %d -> %d\n  stage: %s\n",
			r.Operation, r.Container, r.Backup, r.Image, r.OldID, r.OldImage, orNone(r.NewID), r.FromEpoch, r.ToEpoch, r.Stage)
		if r.RestartPolicy != "" {
			fmt.Fprintf(w, "  restart policy set aside: %s (max retries %d)\n", r.RestartPolicy, r.RestartMaxRetries)
		}
		fmt.Fprintf(w, "  started: %s\n  updated: %s\n  by: %s\n", r.Started.Format(time.RFC3339), r.Updated.Format("15:04:05.000"), writer(r.Writer))
		if r.Result != "" {
			fmt.Fprintf(w, "  result: %s\n", r.Result)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
	case *proto.Cutover:
		fmt.Fprintf(w, "cutover:\n  from epoch: %d\n  to epoch: %d\n  started: %s\n  deadline: +%.0fms\n  by: %s\n  lags: %s\n",
			r.FromEpoch, r.ToEpoch, r.Started.Format("15:04:05.000"), float64(r.DeadlineMono-r.StartedMono)/1e6,
			writer(r.Writer), strings.Join(r.LAGs, " "))
	}
}

func writer(p proto.Process) string {
	where := p.Container
	if where == "" {
		where = "host"
	}
	return fmt.Sprintf("pid %d in %s (%s)", p.PID, where, p.Hostname)
}

// Summary is one line about a file, as validate and watch print it.
func Summary(it Item) string {
	switch it.Type {
	case TypeRecord:
		if it.LAG == "" {
			return fmt.Sprintf("%s, epoch %d", it.Kind, it.Epoch)
		}
		return fmt.Sprintf("%s of %s, epoch %d, %d members", it.Kind, it.LAG, it.Epoch, it.Members)
	case TypePortDump:
		return "teamd per-port dump"
	case TypeLAGDump:
		return fmt.Sprintf("teamd LAG dump, %d ports", it.Members)
	}
	return it.Type
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
