package teamd

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/teamdwarm/teamdwarm/proto"
)

// ParsePortDump decodes a per-port dump file: exactly the 124-byte LACPDU
// frame teamd last received from the partner on that port (so bytes 40..45
// are this LAG's system MAC as the partner saw it).
func ParsePortDump(b []byte) (proto.LACPDU, error) {
	if len(b) != proto.FrameLen {
		return proto.LACPDU{}, fmt.Errorf("port dump: %d bytes, want %d (one LACPDU frame)", len(b), proto.FrameLen)
	}
	return proto.ParseLACPDU(b)
}

// LAGDump is SONiC teamd's per-LAG warm-reboot dump file, named after the
// LAG in the -L directory: "carrier\nN\n" then "name\nenabled\n" per port,
// e.g. "1\n1\nEthernet40\n1\n".
type LAGDump struct {
	Carrier bool       `json:"carrier"`
	Ports   []DumpPort `json:"ports"`
}

// DumpPort is one port line pair of a LAGDump.
type DumpPort struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// MaxDumpPorts bounds the port count a LAG dump may declare.
const MaxDumpPorts = 256

// AppendBinary writes d in teamd's format.
func (d LAGDump) AppendBinary(b []byte) ([]byte, error) {
	b = fmt.Appendf(b, "%d\n%d\n", btoi(d.Carrier), len(d.Ports))
	for _, p := range d.Ports {
		b = fmt.Appendf(b, "%s\n%d\n", p.Name, btoi(p.Enabled))
	}
	return b, nil
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// ParseLAGDump decodes a per-LAG dump file. The declared port count must
// match the lines that follow; errors name the line.
func ParseLAGDump(b []byte) (LAGDump, error) {
	var d LAGDump
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return d, fmt.Errorf("LAG dump: does not end with a newline")
	}
	lines := bytes.Split(b[:len(b)-1], []byte{'\n'})
	flag := func(i int, what string) (bool, error) {
		switch string(lines[i]) {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
		return false, fmt.Errorf("LAG dump: line %d (%s): got %q, want 0 or 1", i+1, what, lines[i])
	}
	if len(lines) < 2 {
		return d, fmt.Errorf("LAG dump: %d lines, want carrier and port count at least", len(lines))
	}
	var err error
	if d.Carrier, err = flag(0, "carrier"); err != nil {
		return d, err
	}
	n, err := strconv.Atoi(string(lines[1]))
	if err != nil || n < 0 || n > MaxDumpPorts {
		return d, fmt.Errorf("LAG dump: line 2 (port count): got %q, want 0..%d", lines[1], MaxDumpPorts)
	}
	if want := 2 + 2*n; len(lines) != want {
		return d, fmt.Errorf("LAG dump: %d ports declared, so %d lines expected, got %d", n, want, len(lines))
	}
	for i := range n {
		name := string(lines[2+2*i])
		if name == "" || len(name) > 15 {
			return d, fmt.Errorf("LAG dump: line %d (port name): %q is not an interface name", 3+2*i, name)
		}
		en, err := flag(3+2*i, "enabled")
		if err != nil {
			return d, err
		}
		d.Ports = append(d.Ports, DumpPort{Name: name, Enabled: en})
	}
	return d, nil
}
