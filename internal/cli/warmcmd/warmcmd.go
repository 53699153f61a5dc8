// Package warmcmd is the teamd-warm command, which upgrade_docker runs: the
// HLD's warm upgrade and rollback of the teamd container (package
// supervisor), and a look at where a run stands.
package warmcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/teamdwarm/teamdwarm/inspect"
	"github.com/teamdwarm/teamdwarm/internal/cli"
	"github.com/teamdwarm/teamdwarm/supervisor"
)

const usage = `teamd-warm <command> [flags]

Commands:
  upgrade  --image IMAGE [flags]   hand every LAG to a new container of IMAGE
  rollback --image IMAGE [flags]   the same flow, back to the previous image
  recover  [flags]                 finish (past its cutover) or undo (before it)
                                   a run that did not end; nothing if none
  status   [flags]                 the last run, the containers, who serves
                                   each LAG, what to do

Exit status: 0 every LAG is served by the new container (recover: the run
was finished or undone, or there was none); 1 failed after the cutover, or a
rollback that did not complete (look at the report); 2 usage; 3 refused by
preflight (nothing was changed); 4 failed before the cutover and rolled back
(the old container serves every LAG).`

// Exit codes beyond cli's.
const (
	ExitRefused    = 3
	ExitRolledBack = 4
)

// Run runs teamd-warm with args (without the program name). The Docker
// Engine is the one the environment names (DOCKER_HOST; the local socket by
// default).
func Run(ctx context.Context, args []string, io cli.IO) error {
	if len(args) == 0 {
		return cli.Usagef("missing command\nusage: %s", usage)
	}
	switch args[0] {
	case "upgrade":
		return upgrade(ctx, supervisor.OpUpgrade, args[1:], io)
	case "rollback":
		return upgrade(ctx, supervisor.OpRollback, args[1:], io)
	case "recover":
		return recoverRun(ctx, args[1:], io)
	case "status":
		return status(ctx, args[1:], io)
	case "help", "-h", "--help":
		fmt.Fprintf(io.Stdout, "usage: %s\n", usage)
		return nil
	}
	return cli.Usagef("unknown command %q\nusage: %s", args[0], usage)
}

// common are the flags every command has.
func common(fs *flag.FlagSet, o *supervisor.Options) *bool {
	fs.StringVar(&o.Container, "container", supervisor.DefaultContainer, "the teamd container")
	fs.StringVar(&o.Backup, "backup", "", "the old container's name during the flow (default CONTAINER"+supervisor.BackupSuffix+")")
	fs.StringVar(&o.Dir, "dir", supervisor.DefaultDir, "the record directory on the host (inside the bind mount the containers share)")
	return fs.Bool("json", false, "print the result as JSON")
}

func upgrade(ctx context.Context, op supervisor.Operation, args []string, io cli.IO) error {
	fs := cli.NewFlags(string(op), io.Stderr, "teamd-warm "+string(op)+" --image IMAGE [flags]")
	var o supervisor.Options
	asJSON := common(fs, &o)
	fs.StringVar(&o.Image, "image", "", "the new container's image, present locally (required)")
	dry := fs.Bool("dry-run", false, "preflight only: print each LAG's rate, members and budget, change nothing")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", supervisor.DefaultReadyTimeout, "a3: roll back if a LAG's standby is not ready by then")
	fs.DurationVar(&o.Deadline, "deadline", supervisor.DefaultDeadline, "b1: standbys without a valid snapshot take over by then")
	fs.DurationVar(&o.TakeoverTimeout, "takeover-timeout", supervisor.DefaultTakeoverTimeout, "b2: a LAG not taken over by then has failed")
	fs.DurationVar(&o.ExitTimeout, "exit-timeout", supervisor.DefaultExitTimeout, "c1: kill the old container if it has not exited by then")
	fs.IntVar(&o.HandoverWindow, "handover-window", supervisor.DefaultHandoverWindow, "b1: how many LAGs hand over per fast period (in waves, in the LAGs' order)")
	fs.Int64Var(&o.StandbyCPUShares, "standby-cpu-shares", supervisor.DefaultStandbyCPUShares,
		"a2 to b1: the new container's CPU shares while its standbys stand up, idle too where the kernel has cpu.idle, so that the old teamds come first (-1: the old container's shares throughout, not idle)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("%s: unexpected arguments %q", op, fs.Args())
	}
	if o.Image == "" {
		return cli.Usagef("%s: --image is required", op)
	}
	s, err := dial(string(op), o, io)
	if err != nil {
		return err
	}
	var rep *supervisor.Report
	if *dry {
		rep, err = s.DryRun(ctx)
	} else {
		rep, err = s.Upgrade(ctx, op)
	}
	if perr := print(io.Stdout, *asJSON, rep); perr != nil {
		return perr
	}
	switch supervisor.ResultOf(err) {
	case supervisor.ResultOK:
		return nil
	case supervisor.ResultRefused:
		return cli.Exit(ExitRefused, err)
	case supervisor.ResultRolledBack:
		return cli.Exit(ExitRolledBack, err)
	}
	return cli.Exit(cli.ExitFailure, err)
}

func recoverRun(ctx context.Context, args []string, io cli.IO) error {
	fs := cli.NewFlags("recover", io.Stderr, "teamd-warm recover [flags]")
	var o supervisor.Options
	asJSON := common(fs, &o)
	fs.DurationVar(&o.TakeoverTimeout, "takeover-timeout", supervisor.DefaultTakeoverTimeout, "a LAG not taken over by then has failed")
	fs.DurationVar(&o.ExitTimeout, "exit-timeout", supervisor.DefaultExitTimeout, "kill the old container if it has not exited by then")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("recover: unexpected arguments %q", fs.Args())
	}
	s, err := dial("recover", o, io)
	if err != nil {
		return err
	}
	rep, err := s.Recover(ctx)
	if perr := print(io.Stdout, *asJSON, rep); perr != nil {
		return perr
	}
	switch supervisor.ResultOf(err) {
	case supervisor.ResultOK, supervisor.ResultRolledBack:
		return nil // finished, or undone as it should be
	case supervisor.ResultRefused:
		return cli.Exit(ExitRefused, err)
	}
	return cli.Exit(cli.ExitFailure, err)
}

// dial makes the supervisor for command cmd, its progress on stderr with
// the time since now.
func dial(cmd string, o supervisor.Options, io cli.IO) (*supervisor.Supervisor, error) {
	start := time.Now()
	o.Progress = func(st supervisor.Step) {
		fmt.Fprintf(io.Stderr, "teamd-warm: [%6.2fs] %-9s %s\n", st.At.Sub(start).Seconds(), st.Stage, st.Message)
	}
	e, err := supervisor.Dial()
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	s, err := supervisor.New(e, o)
	if err != nil {
		return nil, cli.Usagef("%s: %v", cmd, err)
	}
	return s, nil
}

func print(w io.Writer, asJSON bool, rep *supervisor.Report) error {
	if asJSON {
		return cli.JSON(w, rep)
	}
	return rep.WriteText(w)
}

// statusView is what status --json prints: the supervisor's status and the
// records, as teamd-state show --json prints them.
type statusView struct {
	*supervisor.Status
	Records []inspect.Item `json:"records"`
	Error   string         `json:"records_error,omitempty"`
}

func status(ctx context.Context, args []string, io cli.IO) error {
	fs := cli.NewFlags("status", io.Stderr, "teamd-warm status [flags]")
	var o supervisor.Options
	asJSON := common(fs, &o)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("status: unexpected arguments %q", fs.Args())
	}
	e, err := supervisor.Dial()
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	s, err := supervisor.New(e, o)
	if err != nil {
		return cli.Usagef("status: %v", err)
	}
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	v := statusView{Status: st, Records: []inspect.Item{}}
	if items, err := inspect.Dir(st.Dir, time.Now()); err != nil {
		v.Error = err.Error()
	} else {
		v.Records = items
	}
	if *asJSON {
		return cli.JSON(io.Stdout, v)
	}
	return writeStatus(io.Stdout, v)
}

// writeStatus prints status for a person: the run, the containers, the
// LAGs, what is wrong and what to do, then the records.
func writeStatus(w io.Writer, v statusView) error {
	st := v.Status
	if r := st.Run; r != nil {
		state := "ended " + r.Result
		switch {
		case r.Running:
			state = "running, at " + r.Stage
		case r.Interrupted:
			state = "INTERRUPTED at " + r.Stage
		}
		fmt.Fprintf(w, "run       %s to %s (epoch %d to %d), %s; by %s, last step %s\n", r.Operation, r.Image, r.FromEpoch, r.ToEpoch,
			state, r.By, r.Updated.Format("2006-01-02 15:04:05"))
	} else {
		fmt.Fprintln(w, "run       none recorded")
	}
	for _, c := range st.Containers {
		if !c.Present {
			fmt.Fprintf(w, "container %-12s absent\n", c.Name)
			continue
		}
		epoch := "not given"
		if c.Epoch != 0 {
			epoch = fmt.Sprint(c.Epoch)
		}
		fmt.Fprintf(w, "container %-12s %-9s %s  image %s  epoch %s  serves %d LAGs, %d standbys\n",
			c.Name, c.State, c.ID[:min(12, len(c.ID))], c.Image, epoch, len(c.Serves), len(c.Standbys))
	}
	if st.Lock != "" {
		fmt.Fprintf(w, "lock      held by %s\n", st.Lock)
	} else {
		fmt.Fprintln(w, "lock      free")
	}
	if len(st.LAGs) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LAG\tSERVED BY\tEPOCH\tPATH\tSHIM\tSTANDBY")
		for _, l := range st.LAGs {
			shim := "alive"
			switch {
			case l.NoShim != "":
				shim = "none (" + l.NoShim + ")"
			case l.LockUnknown:
				shim = "unknown"
			case !l.Alive:
				shim = "DEAD"
			}
			standby := "-"
			if l.Standby != 0 {
				standby = fmt.Sprintf("epoch %d", l.Standby)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", l.LAG, orDash(l.ServedBy), l.Epoch, orDash(string(l.Path)), shim, standby)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "problem:  %s\n", p)
	}
	if st.Next != "" {
		fmt.Fprintf(w, "next:     %s\n", st.Next)
	}
	fmt.Fprintf(w, "records   %s\n", st.Dir)
	if v.Error != "" {
		fmt.Fprintf(w, "  %s\n", v.Error)
		return nil
	}
	return inspect.WriteTable(w, v.Records)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
