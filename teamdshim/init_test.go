package teamdshim

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The shims' GODEBUG gets asyncpreemptoff=1 unless it says otherwise, with
// the word that init added it, and nothing else of the environment
// changes; the shim takes it out again for teamd.
func TestWithShimGODEBUG(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		godebug string // the GODEBUG the result holds
		added   bool   // and says init added to it
	}{
		{"none", []string{"PATH=/bin"}, "asyncpreemptoff=1", true},
		{"empty", []string{"PATH=/bin", "GODEBUG="}, "asyncpreemptoff=1", true},
		{"other settings", []string{"GODEBUG=madvdontneed=1", "PATH=/bin"}, "madvdontneed=1,asyncpreemptoff=1", true},
		{"the operator's word", []string{"GODEBUG=asyncpreemptoff=0"}, "asyncpreemptoff=0", false},
		{"the operator's word, later", []string{"GODEBUG=gctrace=1,asyncpreemptoff=0"}, "gctrace=1,asyncpreemptoff=0", false},
		{"a setting whose name ends alike", []string{"GODEBUG=xasyncpreemptoff=0"}, "xasyncpreemptoff=0,asyncpreemptoff=1", true},
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
			if added := slices.Contains(got, envGODEBUGAdded+"=1"); added != tc.added {
				t.Errorf("%s set: %v, want %v", envGODEBUGAdded, added, tc.added)
			}
			isGODEBUG := func(kv string) bool {
				return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, envGODEBUGAdded+"=")
			}
			if rest, want := slices.DeleteFunc(slices.Clone(got), isGODEBUG), slices.DeleteFunc(slices.Clone(tc.env), isGODEBUG); !slices.Equal(rest, want) {
				t.Errorf("the other variables are %v, want %v", rest, want)
			}
		})
	}
}

// What init added to GODEBUG comes out again for teamd, and only that.
func TestTeamdGODEBUGFromInit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		godebug  string // "-": unset
		added    bool
		forTeamd string // "-": unset
	}{
		{"added to none", "asyncpreemptoff=1", true, "-"},
		{"added to others", "gctrace=1,asyncpreemptoff=1", true, "gctrace=1"},
		{"not added", "asyncpreemptoff=1", false, "asyncpreemptoff=1"},
		{"none at all", "-", false, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setOrUnset(t, "GODEBUG", tc.godebug)
			setOrUnset(t, envGODEBUGAdded, map[bool]string{true: "1", false: "-"}[tc.added])
			TeamdGODEBUGFromInit()
			got, ok := os.LookupEnv("GODEBUG")
			if !ok {
				got = "-"
			}
			if got != tc.forTeamd {
				t.Errorf("teamd's GODEBUG %q, want %q", got, tc.forTeamd)
			}
			if _, ok := os.LookupEnv(envGODEBUGAdded); ok {
				t.Errorf("%s left for teamd", envGODEBUGAdded)
			}
		})
	}
}

// setOrUnset sets key to v for the test, or unsets it if v is "-".
func setOrUnset(t *testing.T, key, v string) {
	t.Setenv(key, "") // restored after the test
	if v == "-" {
		os.Unsetenv(key)
	} else {
		os.Setenv(key, v)
	}
}
