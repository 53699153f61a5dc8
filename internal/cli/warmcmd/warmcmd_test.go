package warmcmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/teamdwarm/teamdwarm/internal/cli"
)

// Usage errors exit 2 with a clear message, before any Docker call.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"upgrade-all"}, `unknown command "upgrade-all"`},
		{[]string{"upgrade"}, "--image is required"},
		{[]string{"rollback", "--image", "x", "extra"}, "unexpected arguments"},
		{[]string{"upgrade", "--image", "x", "--deadline", "9s"}, "deadline 9s is not shorter than the takeover timeout 8s"},
		{[]string{"upgrade", "--image", "x", "--container", "teamd", "--backup", "teamd"}, `backup container name "teamd" is the container's own`},
		{[]string{"upgrade", "--image", "x", "--ready-timeout", "-1s"}, "negative timeout"},
		{[]string{"status", "now"}, "unexpected arguments"},
		{[]string{"recover", "now"}, "unexpected arguments"},
		{[]string{"upgrade", "--no-such-flag"}, "flag provided but not defined"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), tc.args, cli.IO{Stdout: &stdout, Stderr: &stderr})
			code := cli.Report("teamd-warm", err, &stderr)
			if code != cli.ExitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q: want %d and %q", code, stderr.String(), cli.ExitUsage, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q on a usage error", stdout.String())
			}
		})
	}
}
