package teamdsim

import (
	"encoding/json"
	"fmt"

	"github.com/teamdwarm/teamdwarm/proto"
)

// Config is the part of teamd's JSON config the stand-in honours (the keys
// teammgrd writes, plus "ports" as teamd's own examples use it).
type Config struct {
	Device string
	HWAddr proto.MAC
	Runner RunnerConfig
	Ports  map[string]PortConfig
}

// RunnerConfig is the lacp runner's config.
type RunnerConfig struct {
	Name     string
	Active   bool
	FastRate bool
	SysPrio  uint16
	MinPorts int
}

// PortConfig is one port's config.
type PortConfig struct {
	LACPKey  uint16 `json:"lacp_key"`
	LACPPrio uint16 `json:"lacp_prio"`
}

// DefaultPortConfig is teamd's default: key 0, priority 255.
var DefaultPortConfig = PortConfig{LACPKey: 0, LACPPrio: 255}

type jsonConfig struct {
	Device string `json:"device"`
	HWAddr string `json:"hwaddr"`
	Runner struct {
		Name     string  `json:"name"`
		Active   *bool   `json:"active"`
		FastRate bool    `json:"fast_rate"`
		SysPrio  *uint16 `json:"sys_prio"`
		MinPorts int     `json:"min_ports"`
		Fallback bool    `json:"fallback"`
	} `json:"runner"`
	Ports map[string]json.RawMessage `json:"ports"`
}

// ParseConfig reads teamd JSON. device is the -t value, which wins over
// the config's "device" as in teamd.
func ParseConfig(b []byte, device string) (Config, error) {
	var j jsonConfig
	if err := json.Unmarshal(b, &j); err != nil {
		return Config{}, fmt.Errorf("teamd config: %w", err)
	}
	c := Config{Device: j.Device, Ports: map[string]PortConfig{}}
	if device != "" {
		c.Device = device
	}
	if c.Device == "" {
		return Config{}, fmt.Errorf("teamd config: no team device name (-t or \"device\")")
	}
	if j.Runner.Name != "lacp" {
		return Config{}, fmt.Errorf("teamd config: runner %q: the stand-in implements only \"lacp\"", j.Runner.Name)
	}
	if j.HWAddr == "" {
		return Config{}, fmt.Errorf("teamd config: \"hwaddr\" missing: without a team device the stand-in needs it for the LACP system id")
	}
	mac, err := proto.ParseMAC(j.HWAddr)
	if err != nil {
		return Config{}, fmt.Errorf("teamd config: hwaddr: %w", err)
	}
	c.HWAddr = mac
	c.Runner = RunnerConfig{Name: "lacp", Active: true, FastRate: j.Runner.FastRate, SysPrio: 65535, MinPorts: j.Runner.MinPorts}
	if j.Runner.Active != nil {
		c.Runner.Active = *j.Runner.Active
	}
	if j.Runner.SysPrio != nil {
		c.Runner.SysPrio = *j.Runner.SysPrio
	}
	for name, raw := range j.Ports {
		pc, err := ParsePortConfig(raw)
		if err != nil {
			return Config{}, fmt.Errorf("teamd config: port %s: %w", name, err)
		}
		c.Ports[name] = pc
	}
	return c, nil
}

// ParsePortConfig reads a port's JSON config ({"lacp_key":..,"lacp_prio":..}),
// as PortConfigUpdate receives it.
func ParsePortConfig(raw []byte) (PortConfig, error) {
	pc := DefaultPortConfig
	if len(raw) == 0 {
		return pc, nil
	}
	if err := json.Unmarshal(raw, &pc); err != nil {
		return pc, err
	}
	return pc, nil
}
