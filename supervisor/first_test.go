package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teamdwarm/teamdwarm/supervisor/shimless"
	"github.com/teamdwarm/teamdwarm/teamd"
)

// checkLayout holds an old teamd to SONiC's layout: its pid file names it
// and its config is there (on its command line, or in the -f file inside
// the container).
func TestCheckLayout(t *testing.T) {
	const conf = `{"device":"PortChannel1","runner":{"name":"lacp","active":true,"fast_rate":true}}`
	for _, tc := range []struct {
		name    string
		pidFile string // contents of /var/run/teamd/PortChannel1.pid, none if ""
		args    []string
		files   map[string]string // more files in the container
		want    string            // error text, "" for none
	}{
		{name: "teammgrd's", pidFile: "42\n", args: []string{"-r", "-t", "PortChannel1", "-c", conf, "-L", "/var/warmboot/teamd/", "-g", "-d"}},
		{name: "config file", pidFile: "42\n", args: []string{"-t", "PortChannel1", "-f", "/etc/teamd/PortChannel1.conf", "-d"},
			files: map[string]string{"etc/teamd/PortChannel1.conf": conf}},
		{name: "no pid file", args: []string{"-t", "PortChannel1", "-c", conf, "-d"}, want: "pid file /var/run/teamd/PortChannel1.pid"},
		{name: "another's pid file", pidFile: "43\n", args: []string{"-t", "PortChannel1", "-c", conf, "-d"}, want: `says "43", but this teamd is pid 42`},
		{name: "pid file given", pidFile: "7\n", args: []string{"-t", "PortChannel1", "-c", conf, "-p", "/run/pc1.pid", "-d"},
			files: map[string]string{"run/pc1.pid": "42\n"}},
		{name: "no config", pidFile: "42\n", args: []string{"-t", "PortChannel1", "-d"}, want: "no config"},
		{name: "missing config file", pidFile: "42\n", args: []string{"-t", "PortChannel1", "-f", "/etc/teamd/x.conf"}, want: "config file /etc/teamd/x.conf"},
		{name: "bad config", pidFile: "42\n", args: []string{"-t", "PortChannel1", "-c", "{", "-d"}, want: "teamd config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{}
			for k, v := range tc.files {
				files[k] = v
			}
			if tc.pidFile != "" {
				files["run/teamd/PortChannel1.pid"] = tc.pidFile
			}
			if err := os.MkdirAll(filepath.Join(root, "var"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/run", filepath.Join(root, "var/run")); err != nil { // Debian's
				t.Fatal(err)
			}
			for name, body := range files {
				path := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, err := shimless.OpenRootDir(root)
			if err != nil {
				t.Fatal(err)
			}
			f := &firstPlan{root: r}
			defer f.close()
			a, err := teamd.ParseArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			td := &shimless.Teamd{LAG: "PortChannel1", PID: 4242, NSPID: 42, Args: a, PIDFile: "/var/run/teamd/PortChannel1.pid"}
			td.Config, _ = a.Value("c")
			if p, ok := a.Value("p"); ok {
				td.PIDFile = p
			}
			err = f.checkLayout(td)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.want == "" && td.Config != conf:
				t.Errorf("config %q, want the teamd's", td.Config)
			}
		})
	}
}
