// Package inspect tells what a file on the warmboot mount is and shows it to
// an operator: teamdwarm's records (one file, or a record directory) and
// SONiC teamd's warm-reboot dump files. teamd-state, teamd-shim status and
// teamd-warm status all show records through it, as text or as JSON.
package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// Item is one inspected file. Its JSON form is what --json prints:
//
//	{
//	  "path":    "/var/warmboot/teamdwarm/PortChannel1.snapshot",
//	  "type":    "record" | "teamd-port-dump" | "teamd-lag-dump",
//	  "kind":    "snapshot" | "standby" | "active" | "cutover",   (records)
//	  "lag":     "PortChannel1",                                  (records but cutover)
//	  "epoch":   7,                                               (records)
//	  "age_seconds": 1.5,                                         (records: since taken/ready/since/started)
//	  "members": 2,                                               (records, LAG dumps)
//	  "record":  {...},          the record's fields, as in package proto
//	  "port_dump": {"Dst","Src","Actor","Partner",...},           (a 124-byte per-port dump)
//	  "lag_dump": {"carrier": true, "ports": [{"name","enabled"}]},
//	  "error":   "why the file is not valid"                      (validate, watch)
//	}
type Item struct {
	Path       string         `json:"path"`
	Type       string         `json:"type,omitempty"`
	Kind       string         `json:"kind,omitempty"`
	LAG        string         `json:"lag,omitempty"`
	Epoch      uint64         `json:"epoch,omitempty"`
	AgeSeconds float64        `json:"age_seconds,omitempty"`
	Members    int            `json:"members,omitempty"`
	Record     proto.Record   `json:"record,omitempty"`
	PortDump   *proto.LACPDU  `json:"port_dump,omitempty"`
	LAGDump    *teamd.LAGDump `json:"lag_dump,omitempty"`
	Error      string         `json:"error,omitempty"`
	Removed    bool           `json:"removed,omitempty"`
}

// The file types File recognizes (Item.Type).
const (
	TypeRecord   = "record"
	TypePortDump = "teamd-port-dump"
	TypeLAGDump  = "teamd-lag-dump"
)

// ErrUnknownFile is matched by File's error for a file that is neither a
// record nor a teamd dump file.
var ErrUnknownFile = errors.New("not a teamdwarm record nor a teamd dump file")

// File reads one file and tells what it is; now dates the records. The read
// is bounded: an operator may point it at anything.
func File(path string, now time.Time) (Item, error) {
	it := Item{Path: path}
	b, err := statefile.ReadBounded(path)
	if err != nil {
		return it, err
	}
	switch {
	case bytes.HasPrefix(b, []byte("TDWR")):
		rec, err := statefile.Parse(path, b)
		if err != nil {
			return it, err
		}
		it.SetRecord(rec, now)
		return it, nil
	case len(b) >= proto.FrameLen && len(b) <= 2*proto.FrameLen:
		// teamd writes the 124-byte frame it received from the partner.
		p, err := teamd.ParsePortDump(b)
		if err != nil {
			return it, fmt.Errorf("%s: looks like a teamd per-port dump (%d bytes) but: %w", path, len(b), err)
		}
		it.Type, it.PortDump = TypePortDump, &p
		return it, nil
	}
	d, err := teamd.ParseLAGDump(b)
	if err != nil {
		return it, fmt.Errorf("%s: %w (as a teamd LAG dump: %w)", path, ErrUnknownFile, err)
	}
	it.Type, it.LAGDump, it.Members = TypeLAGDump, &d, len(d.Ports)
	return it, nil
}

// SetRecord fills it from a record that has been read already; now dates
// it.
func (it *Item) SetRecord(rec proto.Record, now time.Time) {
	it.Type, it.Record = TypeRecord, rec
	it.Kind, it.LAG, it.Epoch = rec.Kind().String(), rec.RecordLAG(), rec.RecordEpoch()
	var at time.Time
	switch r := rec.(type) {
	case *proto.Snapshot:
		at, it.Members = r.Taken, len(r.Members)
	case *proto.Standby:
		at, it.Members = r.Ready, len(r.Members)
	case *proto.Active:
		at, it.Members = r.Since, len(r.Members)
	case *proto.Cutover:
		at, it.Members = r.Started, 0
	case *proto.Journal:
		at, it.Members = r.Updated, 0
	}
	if !at.IsZero() {
		it.AgeSeconds = now.Sub(at).Seconds()
	}
}

// Dir lists a directory: its records, or else the teamd dump files in it.
// A directory with neither is an error.
func Dir(dir string, now time.Time) ([]Item, error) {
	es, err := statefile.List(dir)
	if err != nil {
		return nil, err
	}
	var items []Item
	for _, e := range es {
		it := Item{Path: filepath.Join(dir, e.Name), LAG: e.LAG, Kind: e.Kind.String()}
		if e.Err != nil {
			it.Error = e.Err.Error()
		} else {
			it.SetRecord(e.Record, now)
		}
		items = append(items, it)
	}
	if len(items) > 0 {
		return items, nil
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		if it, err := File(filepath.Join(dir, de.Name()), now); err == nil {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no teamdwarm records and no teamd dump files in this directory", dir)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Path < items[j].Path })
	return items, nil
}

// IsDir reports whether path is a directory, with a clear error if the path
// is missing.
func IsDir(path string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("%s: no such file or directory", path)
		}
		return false, err
	}
	return st.IsDir(), nil
}
