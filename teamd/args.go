package teamd

import (
	"fmt"
	"strings"
)

// shortOpts is teamd's getopt string: letters followed by ':' take an
// argument.
const shortOpts = "hdkevf:c:p:groNt:nDZ:Uul:L:wP"

// Opt is one option.
type Opt struct {
	Name  string // one letter for a short option ("t"), the name for a long one ("run-dir")
	Value string // its argument, "" if it takes none
	Long  bool   // given as --name=value
}

// Args is a parsed teamd command line.
type Args struct {
	Opts []Opt
}

// Parse reads args (without the program name) getopt-style: clustered
// flags (-gd), attached (-tPortChannel1) or separate arguments; "--" ends
// the options and nothing may follow it. Long options are accepted only as
// --name=value or --name, and kept for the caller to interpret.
func ParseArgs(args []string) (Args, error) {
	var a Args
	for i := 0; i < len(args); i++ {
		w := args[i]
		if w == "--" {
			if i+1 < len(args) {
				return a, fmt.Errorf("unexpected argument %q", args[i+1])
			}
			break
		}
		if long, ok := strings.CutPrefix(w, "--"); ok {
			name, val, _ := strings.Cut(long, "=")
			if name == "" {
				return a, fmt.Errorf("option %q has no name", w)
			}
			a.Opts = append(a.Opts, Opt{Name: name, Value: val, Long: true})
			continue
		}
		if !strings.HasPrefix(w, "-") || w == "-" {
			return a, fmt.Errorf("unexpected argument %q", w)
		}
		for j := 1; j < len(w); j++ {
			c := w[j]
			k := strings.IndexByte(shortOpts, c)
			if k < 0 || c == ':' {
				return a, fmt.Errorf("unknown option -%c", c)
			}
			o := Opt{Name: string(c)}
			if k+1 < len(shortOpts) && shortOpts[k+1] == ':' {
				switch {
				case j+1 < len(w):
					o.Value = w[j+1:]
				case i+1 < len(args):
					i++
					o.Value = args[i]
				default:
					return a, fmt.Errorf("option -%c needs an argument", c)
				}
				j = len(w)
			}
			a.Opts = append(a.Opts, o)
		}
	}
	return a, nil
}

// Has reports whether the short option name was given.
func (a Args) Has(name string) bool {
	_, ok := a.Value(name)
	return ok
}

// Value returns the last value of the short option name, as getopt's
// caller would keep it.
func (a Args) Value(name string) (string, bool) {
	v, ok := "", false
	for _, o := range a.Opts {
		if o.Name == name && !o.Long {
			v, ok = o.Value, true
		}
	}
	return v, ok
}

// Count is how often the short option name was given (-g is repeatable).
func (a Args) Count(name string) int {
	n := 0
	for _, o := range a.Opts {
		if o.Name == name && !o.Long {
			n++
		}
	}
	return n
}

// Without returns a copy of a without the short options named.
func (a Args) Without(names ...string) Args {
	var out Args
	for _, o := range a.Opts {
		drop := false
		for _, n := range names {
			drop = drop || (!o.Long && o.Name == n)
		}
		if !drop {
			out.Opts = append(out.Opts, o)
		}
	}
	return out
}

// With returns a copy of a with the short flag name added if it is not
// there.
func (a Args) With(name string) Args {
	if a.Has(name) {
		return a
	}
	out := Args{Opts: append(append([]Opt(nil), a.Opts...), Opt{Name: name})}
	return out
}

// Argv renders a as command-line words, one option per word plus its
// argument.
func (a Args) Argv() []string {
	var out []string
	for _, o := range a.Opts {
		switch {
		case o.Long && o.Value != "":
			out = append(out, "--"+o.Name+"="+o.Value)
		case o.Long:
			out = append(out, "--"+o.Name)
		case strings.Contains(shortOpts, o.Name+":"):
			out = append(out, "-"+o.Name, o.Value)
		default:
			out = append(out, "-"+o.Name)
		}
	}
	return out
}
