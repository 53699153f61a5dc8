package teamdsim

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/teamdwarm/teamdwarm/internal/sys/lacpsock"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// serve accepts control connections; each request goes to the state
// goroutine and its reply (if any) back to the client.
func (d *Daemon) serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go d.conn(c)
	}
}

func (d *Daemon) conn(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		method, args, err := teamd.ParseRequest(buf[:n])
		if err != nil {
			d.log.Debug("usock: malformed message", "err", err)
			continue // teamd: no reply
		}
		r := ctlRequest{method: method, args: args, reply: make(chan []byte, 1)}
		select {
		case d.ctl <- r:
		case <-time.After(5 * time.Second):
			return // the daemon is stopping
		}
		if reply := <-r.reply; reply != nil {
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	}
}

var errArgs = teamd.Failure("InvalidArgs", "Did not receive correct message arguments.")

// control runs one method on the state goroutine, with teamd's replies.
func (d *Daemon) control(method string, args []string) []byte {
	want := func(n int) bool { return len(args) >= n }
	switch method {
	case teamd.MethodStateDump:
		b, err := d.stateJSON()
		if err != nil {
			return teamd.Failure("StateDumpFail", "Failed to dump state.")
		}
		return teamd.Success(string(b))
	case teamd.MethodStateItemValueGet:
		if !want(1) {
			return errArgs
		}
		v, err := d.stateItem(args[0])
		if err != nil {
			return teamd.Failure("PathDoesNotExist", "Item path does not exist.")
		}
		return teamd.Success(v)
	case teamd.MethodStateItemValueSet:
		if !want(2) {
			return errArgs
		}
		return teamd.Failure("OpNotSupp", "Operation not supported.")
	case teamd.MethodPortAdd:
		if !want(1) {
			return errArgs
		}
		if _, err := lacpsock.Interface(args[0]); err != nil {
			return teamd.Failure("NoSuchDev", "No such device.")
		}
		cfg, ok := d.opts.Config.Ports[args[0]]
		if !ok {
			cfg = DefaultPortConfig
		}
		if err := d.addPort(args[0], cfg, time.Now()); err != nil {
			d.log.Error("port add", "port", args[0], "err", err)
			return teamd.Failure("PortAddFail", "Failed to add port.")
		}
		return teamd.Success("")
	case teamd.MethodPortRemove:
		if !want(1) {
			return errArgs
		}
		if !d.removePort(args[0]) {
			return teamd.Failure("NoSuchDev", "No such device.")
		}
		return teamd.Success("")
	case teamd.MethodPortConfigUpdate:
		if !want(2) {
			return errArgs
		}
		if _, err := lacpsock.Interface(args[0]); err != nil {
			return teamd.Failure("NoSuchDev", "No such device.")
		}
		pc, err := ParsePortConfig([]byte(args[1]))
		if err != nil {
			return teamd.Failure("ConfigUpdateFail", "Failed to update config.")
		}
		d.opts.Config.Ports[args[0]] = pc
		if p, ok := d.lag.ports[args[0]]; ok {
			p.cfg = pc
		}
		return teamd.Success("")
	case teamd.MethodPortConfigDump:
		if !want(1) {
			return errArgs
		}
		pc, ok := d.opts.Config.Ports[args[0]]
		if !ok {
			return teamd.Failure("NoSuchDev", "No such device.")
		}
		b, _ := json.MarshalIndent(pc, "", "    ")
		return teamd.Success(string(b))
	case teamd.MethodConfigDump, teamd.MethodConfigDumpActual:
		b, err := d.configJSON()
		if err != nil {
			return teamd.Failure("ConfigDumpFail", "Failed to dump config.")
		}
		return teamd.Success(string(b))
	}
	return nil // unknown method: teamd stays silent
}

func (d *Daemon) configJSON() ([]byte, error) {
	var cfg map[string]any
	if err := json.Unmarshal([]byte(d.opts.ConfigJSON), &cfg); err != nil {
		return nil, err
	}
	ports := map[string]any{}
	for name, pc := range d.opts.Config.Ports {
		ports[name] = pc
	}
	cfg["ports"] = ports
	return json.MarshalIndent(cfg, "", "    ")
}

// state builds StateDump from the typed shape the shim reads, so both ends
// agree; teamd sorts keys and indents by 4, which the map round trip does.
func (d *Daemon) state() teamd.State {
	st := teamd.State{
		Ports: map[string]teamd.Port{},
		Runner: teamd.RunnerState{Active: d.lag.cfg.Runner.Active, FastRate: d.lag.cfg.Runner.FastRate,
			SelectPolicy: "lacp_prio", SysPrio: int(d.lag.cfg.Runner.SysPrio)},
		Setup: teamd.Setup{Daemonized: d.opts.Daemonized, DebugLevel: d.opts.Debug, KernelTeamModeName: "loadbalance",
			PID: os.Getpid(), PIDFile: d.opts.PIDFile, RunnerName: "lacp"},
		TeamDevice: teamd.TeamDevice{IfInfo: teamd.IfInfo{DevAddr: d.lag.cfg.HWAddr.String(), DevAddrLen: 6, Ifname: d.lag.cfg.Device}},
	}
	if d.opts.Profile.PassiveStart() { // teamdwarm's teamd says which mode it is in
		passive := d.silent
		st.Setup.Passive = &passive
	}
	for _, p := range d.lag.sortedPorts() {
		up := false
		if ifi, err := lacpsock.Interface(p.name); err == nil {
			up = ifi.Up
		}
		st.Ports[p.name] = teamd.Port{
			IfInfo: teamd.IfInfo{DevAddr: p.mac.String(), DevAddrLen: 6, Ifindex: p.ifindex, Ifname: p.name},
			Link:   teamd.Link{Duplex: "full", Speed: 10000, Up: up},
			LinkWatches: teamd.LinkWatches{Up: up, List: map[string]teamd.LinkWatch{
				"link_watch_0": {Name: "ethtool", Up: up}}},
			Runner: teamd.PortRunner{
				ActorLACPDUInfo:   teamd.InfoOf(d.lag.actor(p)),
				PartnerLACPDUInfo: teamd.InfoOf(p.partner),
				Aggregator:        teamd.Aggregator{ID: p.aggID, Selected: p.selected},
				Key:               int(p.cfg.LACPKey), Prio: int(p.cfg.LACPPrio),
				Selected: p.selected, State: p.state,
			},
		}
	}
	return st
}

func (d *Daemon) stateTree() (map[string]any, error) {
	b, err := json.Marshal(d.state())
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	err = json.Unmarshal(b, &tree)
	return tree, err
}

func (d *Daemon) stateJSON() ([]byte, error) {
	tree, err := d.stateTree()
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(tree, "", "    ")
}

// stateItem reads a leaf by its dotted path, e.g. "ports.eth0.runner.state".
func (d *Daemon) stateItem(path string) (string, error) {
	tree, err := d.stateTree()
	if err != nil {
		return "", err
	}
	var cur any = tree
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", errors.New("no such item")
		}
		if cur, ok = m[part]; !ok {
			return "", errors.New("no such item")
		}
	}
	switch v := cur.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	}
	return "", errors.New("not a leaf")
}
