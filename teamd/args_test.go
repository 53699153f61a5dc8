package teamd

import (
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		argv []string // Argv of the parse
		team string
	}{
		{"teammgrd warm", []string{"-w", "-o", "-t", "PortChannel1", "-c", `{"a":1}`, "-L", "/var/warmboot/teamd/", "-g", "-d"},
			[]string{"-w", "-o", "-t", "PortChannel1", "-c", `{"a":1}`, "-L", "/var/warmboot/teamd/", "-g", "-d"}, "PortChannel1"},
		{"clustered and attached", []string{"-gdtPortChannel2", "-c{}"},
			[]string{"-g", "-d", "-t", "PortChannel2", "-c", "{}"}, "PortChannel2"},
		{"long options kept", []string{"-t", "x", "--run-dir=/r", "--flag"},
			[]string{"-t", "x", "--run-dir=/r", "--flag"}, "x"},
		{"trailing --", []string{"-t", "x", "--"}, []string{"-t", "x"}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseArgs(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Argv(); !slices.Equal(got, tt.argv) {
				t.Errorf("Argv = %q, want %q", got, tt.argv)
			}
			if got, _ := a.Value("t"); got != tt.team {
				t.Errorf("-t = %q, want %q", got, tt.team)
			}
			// Rendering and parsing again changes nothing.
			b, err := ParseArgs(a.Argv())
			if err != nil || !slices.Equal(b.Argv(), a.Argv()) {
				t.Errorf("round trip: %q, %v", b.Argv(), err)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, args := range [][]string{{"-t"}, {"-x"}, {"stray"}, {"-t", "a", "--", "b"}, {"-"}, {"-:"}, {"--="}, {"--=x"}} {
		if _, err := ParseArgs(args); err == nil {
			t.Errorf("ParseArgs(%q): no error", args)
		}
	}
}

func TestRewrite(t *testing.T) {
	a, err := ParseArgs([]string{"-gd", "-t", "PortChannel1", "-r", "-c", "{}", "-g"})
	if err != nil {
		t.Fatal(err)
	}
	got := a.Without("d").With("w").Argv()
	want := []string{"-g", "-t", "PortChannel1", "-r", "-c", "{}", "-g", "-w"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if a.Count("g") != 2 || !a.Has("d") {
		t.Errorf("the original changed: %q", a.Argv())
	}
	if n := len(a.With("r").Opts); n != len(a.Opts) {
		t.Errorf("With of a present flag added one: %d opts", n)
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("-w\x00-o\x00-t\x00PortChannel1\x00-c\x00{}\x00-gd")
	f.Add("-tX\x00--run-dir=/a\x00--")
	f.Fuzz(func(t *testing.T, s string) {
		args := slices.Collect(func(yield func(string) bool) {
			start := 0
			for i := 0; i <= len(s); i++ {
				if i == len(s) || s[i] == 0 {
					if !yield(s[start:i]) {
						return
					}
					start = i + 1
				}
			}
		})
		a, err := ParseArgs(args)
		if err != nil {
			return
		}
		b, err := ParseArgs(a.Argv())
		if err != nil {
			t.Fatalf("Argv %q of a parsed line does not parse: %v", a.Argv(), err)
		}
		if !slices.Equal(a.Argv(), b.Argv()) {
			t.Fatalf("round trip changed %q to %q", a.Argv(), b.Argv())
		}
	})
}

func TestProbeOutput(t *testing.T) {
	for _, tc := range []struct {
		name, help string
		want       Profile
	}{
		{name: "teamdwarm's", help: "    -L --lacp-directory  ...\n    -P --passive  ...\n", want: ProfileHLD},
		{name: "SONiC's", help: "    -L --lacp-directory      Directory for saving lacp pdu dumps\n", want: ProfileSONiC},
		{name: "stock", help: "    -t --team-dev=TEAMDEV    Team device name\n", want: ProfileStock},
		{name: "nothing", want: ProfileStock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := ProbeOutput("/usr/bin/teamd", []byte(tc.help), []byte("teamd 1.31\n"))
			if Profile(info.Profile) != tc.want || info.Version != "teamd 1.31" || info.Program != "/usr/bin/teamd" {
				t.Errorf("%+v: want profile %s, version teamd 1.31", info, tc.want)
			}
		})
	}
}
