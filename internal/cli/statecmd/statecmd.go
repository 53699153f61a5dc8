// Package statecmd is the teamd-state command: it shows, validates, compares
// and watches teamdwarm's record files and SONiC teamd's warm-reboot dump
// files, for an operator on a switch.
package statecmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/teamdwarm/teamdwarm/inspect"
	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/proto"
	"github.com/teamdwarm/teamdwarm/statefile"
)

const usage = `teamd-state <command> [--json] PATH...

Commands:
  show PATH...      a record file, a directory of records, or a SONiC teamd dump file
  validate PATH...  check records; exit 0 if all are valid, 1 if any is not
  diff A B          compare two records member by member; exit 0 if equal, 1 if not
  watch DIR         print each record as it lands, until interrupted`

// Run runs teamd-state with args (without the program name).
func Run(ctx context.Context, args []string, io cli.IO) error {
	if len(args) == 0 {
		return cli.Usagef("missing command\nusage: %s", usage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "show":
		return show(args, io)
	case "validate":
		return validate(args, io)
	case "diff":
		return diff(args, io)
	case "watch":
		return watch(ctx, args, io)
	case "help", "-h", "--help":
		fmt.Fprintf(io.Stdout, "usage: %s\n", usage)
		return nil
	}
	return cli.Usagef("unknown command %q\nusage: %s", cmd, usage)
}

func parse(name, synopsis string, args []string, io cli.IO, min, max int) ([]string, bool, error) {
	fs := cli.NewFlags(name, io.Stderr, "teamd-state "+name+" [--json] "+synopsis)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := cli.Parse(fs, args); err != nil {
		return nil, false, err
	}
	n := fs.NArg()
	if n < min || (max > 0 && n > max) {
		return nil, false, cli.Usagef("%s: want %s", name, synopsis)
	}
	return fs.Args(), *asJSON, nil
}

func show(args []string, io cli.IO) error {
	paths, asJSON, err := parse("show", "PATH...", args, io, 1, 0)
	if err != nil {
		return err
	}
	now := time.Now()
	var all []inspect.Item
	failed := false
	for _, p := range paths {
		dir, err := inspect.IsDir(p)
		if err != nil {
			fmt.Fprintf(io.Stderr, "teamd-state: %v\n", err)
			failed = true
			continue
		}
		if dir {
			items, err := inspect.Dir(p, now)
			if err != nil {
				fmt.Fprintf(io.Stderr, "teamd-state: %v\n", err)
				failed = true
				continue
			}
			if !asJSON {
				if err := inspect.WriteTable(io.Stdout, items); err != nil {
					return err
				}
			}
			all = append(all, items...)
			continue
		}
		it, err := inspect.File(p, now)
		if err != nil {
			fmt.Fprintf(io.Stderr, "teamd-state: %v\n", err)
			failed = true
			continue
		}
		if !asJSON {
			inspect.WriteItem(io.Stdout, it)
		}
		all = append(all, it)
	}
	if asJSON {
		if all == nil {
			all = []inspect.Item{}
		}
		if err := cli.JSON(io.Stdout, all); err != nil {
			return err
		}
	}
	if failed {
		return cli.Exit(cli.ExitFailure, nil)
	}
	return nil
}

func validate(args []string, io cli.IO) error {
	paths, asJSON, err := parse("validate", "PATH...", args, io, 1, 0)
	if err != nil {
		return err
	}
	now := time.Now()
	var items []inspect.Item
	for _, p := range paths {
		dir, err := inspect.IsDir(p)
		switch {
		case err != nil:
			items = append(items, inspect.Item{Path: p, Error: err.Error()})
		case dir:
			es, err := statefile.List(p)
			if err == nil && len(es) == 0 {
				err = fmt.Errorf("%s: no record files in this directory", p)
			}
			if err != nil {
				items = append(items, inspect.Item{Path: p, Error: err.Error()})
			}
			for _, e := range es {
				it := inspect.Item{Path: p + "/" + e.Name}
				if e.Err != nil {
					it.Error = e.Err.Error()
				} else {
					it.SetRecord(e.Record, now)
				}
				items = append(items, it)
			}
		default:
			it, err := inspect.File(p, now)
			if err != nil {
				it.Error = err.Error()
			}
			items = append(items, it)
		}
	}
	bad := 0
	for _, it := range items {
		if it.Error != "" {
			bad++
		}
		if !asJSON {
			if it.Error != "" {
				fmt.Fprintf(io.Stdout, "%s: INVALID: %s\n", it.Path, it.Error)
			} else {
				fmt.Fprintf(io.Stdout, "%s: ok (%s)\n", it.Path, inspect.Summary(it))
			}
		}
	}
	if asJSON {
		for i := range items {
			items[i].Record, items[i].PortDump, items[i].LAGDump = nil, nil, nil // validate reports verdicts, not contents
		}
		if err := cli.JSON(io.Stdout, items); err != nil {
			return err
		}
	}
	if bad > 0 {
		return cli.Exit(cli.ExitFailure, nil)
	}
	return nil
}

func watch(ctx context.Context, args []string, io cli.IO) error {
	paths, asJSON, err := parse("watch", "DIR", args, io, 1, 1)
	if err != nil {
		return err
	}
	dir := paths[0]
	if ok, err := inspect.IsDir(dir); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%s: not a directory", dir)
	}
	events, err := statefile.Watch(ctx, dir)
	if err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(io.Stderr, "watching %s; Ctrl-C to stop\n", dir)
	}
	for ev := range events {
		it := inspect.Item{Path: ev.Path, LAG: ev.LAG, Kind: ev.Kind.String(), Removed: ev.Removed}
		switch {
		case ev.Name == "":
			it.Path, it.Kind = dir, ""
			it.Error = ev.Err.Error()
		case ev.Err != nil:
			it.Error = ev.Err.Error()
		case ev.Record != nil:
			it.SetRecord(ev.Record, time.Now())
		}
		if asJSON {
			if err := writeJSONLine(io.Stdout, it); err != nil {
				return err
			}
			continue
		}
		stamp := time.Now().Format("15:04:05.000")
		switch {
		case it.Removed:
			fmt.Fprintf(io.Stdout, "%s %s: removed\n", stamp, ev.Name)
		case it.Error != "":
			fmt.Fprintf(io.Stdout, "%s %s: INVALID: %s\n", stamp, ev.Name, it.Error)
		default:
			fmt.Fprintf(io.Stdout, "%s %s: %s; %s\n", stamp, ev.Name, inspect.Summary(it), inspect.Detail(it.Record))
		}
	}
	return nil // interrupted: a normal end of a watch
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func diff(args []string, io cli.IO) error {
	paths, asJSON, err := parse("diff", "A B", args, io, 2, 2)
	if err != nil {
		return err
	}
	var recs [2]proto.Record
	for i, p := range paths {
		if recs[i], err = statefile.ReadFile(p); err != nil {
			return err
		}
	}
	out, members, err := inspect.Diff(recs[0], recs[1])
	if err != nil {
		return fmt.Errorf("%s vs %s: %w", paths[0], paths[1], err)
	}
	if asJSON {
		if out == nil {
			out = []inspect.Difference{}
		}
		if err := cli.JSON(io.Stdout, out); err != nil {
			return err
		}
	} else if len(out) == 0 {
		fmt.Fprintf(io.Stdout, "no differences in what both records hold (%d members)\n", members)
	} else {
		for _, d := range out {
			who := d.Member
			if who == "" {
				who = "(record)"
			}
			fmt.Fprintf(io.Stdout, "%s %s:\n  - %s\n  + %s\n", who, d.Field, d.A, d.B)
		}
	}
	if len(out) > 0 {
		return cli.Exit(cli.ExitFailure, nil)
	}
	return nil
}
