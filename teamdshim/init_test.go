package teamdshim

import (
	"slices"
	"strings"
	"testing"
)

// The shims' GODEBUG gets asyncpreemptoff=1 unless it says otherwise, and
// nothing else of the environment changes.
func TestWithShimGODEBUG(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		godebug string // the GODEBUG the result holds
	}{
		{"none", []string{"PATH=/bin"}, "asyncpreemptoff=1"},
		{"empty", []string{"PATH=/bin", "GODEBUG="}, "asyncpreemptoff=1"},
		{"other settings", []string{"GODEBUG=madvdontneed=1", "PATH=/bin"}, "madvdontneed=1,asyncpreemptoff=1"},
		{"the operator's word", []string{"GODEBUG=asyncpreemptoff=0"}, "asyncpreemptoff=0"},
		{"the operator's word, later", []string{"GODEBUG=gctrace=1,asyncpreemptoff=0"}, "gctrace=1,asyncpreemptoff=0"},
		{"a setting whose name ends alike", []string{"GODEBUG=xasyncpreemptoff=0"}, "xasyncpreemptoff=0,asyncpreemptoff=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			given := slices.Clone(tc.env)
			got := withShimGODEBUG(given)
			if !slices.Equal(given, tc.env) {
				t.Errorf("the environment given was changed: %v", given)
			}
			var godebugs []string
			for _, kv := range got {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					godebugs = append(godebugs, v)
				}
			}
			if len(godebugs) != 1 || godebugs[0] != tc.godebug {
				t.Errorf("GODEBUG %q, want %q alone", godebugs, tc.godebug)
			}
			isGODEBUG := func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") }
			if rest, want := slices.DeleteFunc(slices.Clone(got), isGODEBUG), slices.DeleteFunc(slices.Clone(tc.env), isGODEBUG); !slices.Equal(rest, want) {
				t.Errorf("the other variables are %v, want %v", rest, want)
			}
		})
	}
}
