package teamdshim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/teamdwarm/teamdwarm/proto"
)

// A shim trusts init's probe only of the very file it runs.
func TestProbedByInit(t *testing.T) {
	dir := t.TempDir()
	program := filepath.Join(dir, "teamd")
	if err := os.WriteFile(program, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	id, err := fileID(program)
	if err != nil {
		t.Fatal(err)
	}
	good := probed{Info: proto.TeamdInfo{Program: program, Version: "teamd 1.31", Profile: "hld"}, File: id}
	render := func(p probed) string { b, _ := json.Marshal(p); return string(b) }
	for _, tc := range []struct {
		name  string
		env   string
		trust bool
	}{
		{"the same file", render(good), true},
		{"another program", render(probed{Info: proto.TeamdInfo{Program: "/usr/bin/other", Profile: "hld"}, File: id}), false},
		{"another version of the file", render(probed{Info: good.Info, File: id + "x"}), false},
		{"an unknown profile", render(probed{Info: proto.TeamdInfo{Program: program, Profile: "mystery"}, File: id}), false},
		{"not JSON", "{", false},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envProbe, tc.env)
			info := probedByInit(program)
			if (info != nil) != tc.trust {
				t.Fatalf("trusted %v, want %v", info != nil, tc.trust)
			}
			if info != nil && *info != good.Info {
				t.Errorf("info %+v, want %+v", *info, good.Info)
			}
			if os.Getenv(envProbe) != "" {
				t.Error("the probe is left in the environment for teamd")
			}
		})
	}
}
