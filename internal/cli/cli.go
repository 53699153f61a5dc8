// Package cli holds what teamdwarm's commands share: exit codes, usage
// errors, and printing one result as text or JSON.
//
// Conventions (from the Go tools): usage errors exit 2 with a "name: "
// prefix and no timestamps; any other failure exits 1; --json prints the
// same records the text form shows.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// ExitError carries an exit code; Err (if not nil) is printed.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Usagef returns a usage error (exit 2).
func Usagef(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// Exit returns an error that makes the command exit with code, printing err
// if it is not nil.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// IO is where a command reads and writes.
type IO struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Main runs a command with the process's arguments and exits. run gets a
// context cancelled by SIGINT or SIGTERM.
func Main(name string, run func(ctx context.Context, args []string, io IO) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], IO{Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(Report(name, err, os.Stderr))
}

// Report prints err (if any) as "name: err" and returns the exit code.
func Report(name string, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	code := ExitFailure
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
		if ee.Err == nil {
			return code
		}
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return code
}

// NewFlags returns a flag set that reports errors instead of exiting and
// prints usage to stderr.
func NewFlags(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs; a bad flag is a usage error.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &ExitError{Code: ExitUsage}
		}
		return &ExitError{Code: ExitUsage} // flag already printed the problem
	}
	return nil
}

// JSON writes v as indented JSON and a newline.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
