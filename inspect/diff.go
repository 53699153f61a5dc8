package inspect

import (
	"fmt"

	"github.com/teamdwarm/teamdwarm/proto"
)

// Difference is one difference between two records; its JSON form is what
// teamd-state diff --json prints:
// {"member": "Ethernet0", "field": "partner.state", "a": "...", "b": "..."}.
// Member is "" for a difference of the record itself.
type Difference struct {
	Member string `json:"member"`
	Field  string `json:"field"`
	A      string `json:"a"`
	B      string `json:"b"`
}

// memberView is what Diff compares of one member.
type memberView struct {
	actor, partner *proto.Info
	state          string
	selected       *bool
}

func membersOf(rec proto.Record) (map[string]memberView, []string, error) {
	m := map[string]memberView{}
	var order []string
	switch r := rec.(type) {
	case *proto.Snapshot:
		for _, x := range r.Members {
			m[x.Name] = memberView{actor: &x.Actor, partner: &x.Partner, state: x.State, selected: &x.Selected}
			order = append(order, x.Name)
		}
	case *proto.Standby:
		for _, x := range r.Members {
			m[x.Name] = memberView{partner: &x.Partner, state: x.State}
			order = append(order, x.Name)
		}
	case *proto.Active:
		for _, name := range r.Members {
			m[name] = memberView{}
			order = append(order, name)
		}
	default:
		return nil, nil, fmt.Errorf("a %s record has no members to compare", rec.Kind())
	}
	return m, order, nil
}

// Diff compares two records member by member, in what both of them hold:
// membership, actor and partner identity and state, teamd's port state and
// selection. members is how many members were compared. A record without
// members (the cutover) is an error.
func Diff(a, b proto.Record) (diffs []Difference, members int, err error) {
	var views [2]map[string]memberView
	var orders [2][]string
	for i, rec := range []proto.Record{a, b} {
		if views[i], orders[i], err = membersOf(rec); err != nil {
			return nil, 0, err
		}
	}
	add := func(member, field, x, y string) {
		if x != y {
			diffs = append(diffs, Difference{member, field, x, y})
		}
	}
	add("", "lag", a.RecordLAG(), b.RecordLAG())
	names := append([]string{}, orders[0]...)
	for _, n := range orders[1] {
		if _, ok := views[0][n]; !ok {
			names = append(names, n)
		}
	}
	for _, name := range names {
		x, inA := views[0][name]
		y, inB := views[1][name]
		if !inA || !inB {
			add(name, "present", yesno(inA), yesno(inB))
			continue
		}
		infoDiff := func(field string, p, q *proto.Info) {
			if p == nil || q == nil {
				return // one side does not record it
			}
			if !p.SameIdentity(*q) {
				add(name, field, p.String(), q.String())
				return
			}
			add(name, field+".state", p.State.String(), q.State.String())
		}
		infoDiff("actor", x.actor, y.actor)
		infoDiff("partner", x.partner, y.partner)
		if x.state != "" && y.state != "" {
			add(name, "state", x.state, y.state)
		}
		if x.selected != nil && y.selected != nil {
			add(name, "selected", yesno(*x.selected), yesno(*y.selected))
		}
	}
	return diffs, len(names), nil
}
