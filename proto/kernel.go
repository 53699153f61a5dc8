package proto

import (
	"fmt"
	"slices"
	"strings"
)

// KernelLAG is the kernel's view of a LAG's team device at one moment (as
// package teamnl reads it from the team generic netlink family and
// rtnetlink): what a handoff must leave exactly as it was, since the data
// plane follows it.
type KernelLAG struct {
	// Err says why the kernel could not be read, "" if it was: on a kernel
	// without the team family, say. The other fields are then zero.
	Err     string       `msgpack:"err" json:"err,omitempty"`
	Name    string       `msgpack:"name" json:"name"`
	Ifindex int          `msgpack:"ifindex" json:"ifindex"`
	Up      bool         `msgpack:"up" json:"up"`           // IFF_UP
	Carrier bool         `msgpack:"carrier" json:"carrier"` // IFF_LOWER_UP: the team has a port that carries
	Ports   []KernelPort `msgpack:"ports" json:"ports"`
}

// KernelPort is one port of a team device as the kernel has it.
type KernelPort struct {
	Name    string `msgpack:"name" json:"name"`
	Ifindex int    `msgpack:"ifindex" json:"ifindex"`
	// Enabled is the team option "enabled": the port is in the LAG's
	// data plane. teamd's lacp runner enables a port once it is
	// collecting and distributing.
	Enabled bool `msgpack:"enabled" json:"enabled"`
	// LinkUp is the team driver's view of the port's link.
	LinkUp            bool `msgpack:"link_up" json:"link_up"`
	UserLinkup        bool `msgpack:"user_linkup" json:"user_linkup"`
	UserLinkupEnabled bool `msgpack:"user_linkup_enabled" json:"user_linkup_enabled"`
	// Carrier is IFF_LOWER_UP of the port's own netdevice.
	Carrier bool `msgpack:"carrier" json:"carrier"`
}

// Read reports whether the kernel was read (Err is empty).
func (k *KernelLAG) Read() bool { return k != nil && k.Err == "" }

// Diff lists how o differs from k, in what the data plane depends on: the
// team device's state and carrier, and each port's presence, enabled
// state, link and carrier. Ports compare by name; the order of the list is
// stable. If either side was not read, the only difference is that.
func (k *KernelLAG) Diff(o *KernelLAG) []string {
	switch {
	case !k.Read() || !o.Read():
		return []string{fmt.Sprintf("not comparable: %s / %s", k.describe(), o.describe())}
	}
	var out []string
	flag := func(what string, a, b bool) {
		if a != b {
			out = append(out, fmt.Sprintf("%s: %s -> %s", what, onOff(a), onOff(b)))
		}
	}
	flag(k.Name+" up", k.Up, o.Up)
	flag(k.Name+" carrier", k.Carrier, o.Carrier)
	ports := map[string][2]*KernelPort{}
	var names []string
	for i, side := range []*KernelLAG{k, o} {
		for j := range side.Ports {
			p := &side.Ports[j]
			pair, seen := ports[p.Name]
			if !seen {
				names = append(names, p.Name)
			}
			pair[i] = p
			ports[p.Name] = pair
		}
	}
	slices.Sort(names)
	for _, n := range names {
		a, b := ports[n][0], ports[n][1]
		switch {
		case a == nil:
			out = append(out, n+": added")
		case b == nil:
			out = append(out, n+": gone")
		default:
			flag(n+" enabled", a.Enabled, b.Enabled)
			flag(n+" link", a.LinkUp, b.LinkUp)
			flag(n+" user_linkup", a.UserLinkup, b.UserLinkup)
			flag(n+" user_linkup_enabled", a.UserLinkupEnabled, b.UserLinkupEnabled)
			flag(n+" carrier", a.Carrier, b.Carrier)
		}
	}
	return out
}

func (k *KernelLAG) describe() string {
	switch {
	case k == nil:
		return "not read"
	case k.Err != "":
		return "unreadable (" + k.Err + ")"
	}
	return "read"
}

// String is a one-line summary: "PortChannel1 up carrier, Ethernet0
// enabled, Ethernet4 disabled".
func (k *KernelLAG) String() string {
	if !k.Read() {
		return k.describe()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s carrier %s", k.Name, map[bool]string{true: "up", false: "down"}[k.Up], onOff(k.Carrier))
	for _, p := range k.Ports {
		en := "disabled"
		if p.Enabled {
			en = "enabled"
		}
		fmt.Fprintf(&b, ", %s %s", p.Name, en)
	}
	return b.String()
}

func onOff(v bool) string {
	if v {
		return "on"
	}
	return "off"
}

// TeamdInfo says which teamd a shim wraps and what that teamd can do.
type TeamdInfo struct {
	Program string `msgpack:"program" json:"program"`
	Version string `msgpack:"version" json:"version"` // its --version line
	// Profile is what it can do (package teamd's profiles): "stock" (no
	// warm stop), "sonic" (SONiC's SIGUSR1 warm stop, no passive start),
	// "hld" (warm stop, passive start and the takeover signal).
	Profile string `msgpack:"profile" json:"profile"`
}
