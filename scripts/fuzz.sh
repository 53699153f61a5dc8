#!/usr/bin/env bash
# Every fuzz target of the module, one after the other, for FUZZTIME each
# (make fuzz). A target that finds a failing input fails the run: go test
# saves the input under the package's testdata/fuzz/, and it is replayed
# here so that the failure shows. A run that fails without saving an input
# is the fuzzing engine's own trouble (a worker that died under load, say):
# its output is shown and the target is fuzzed once more. One such trouble
# is known: Go 1.26's coordinator can report its own -fuzztime deadline as
# the target's failure ("context deadline exceeded", go.dev/issue/75804,
# fixed in Go 1.27). The target was fuzzed for its whole time and no input
# failed, so that counts as a pass.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
# saved counts the inputs go test has saved for target $2 in directory $1.
saved() { { find "$1/testdata/fuzz/$2" -type f 2>/dev/null || true; } | wc -l; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for t in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    for attempt in 1 2; do
      echo "fuzz $pkg $t ($FUZZTIME)"
      before=$(saved "$dir" "$t")
      if $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg" >"$out" 2>&1; then
        break
      fi
      after=$(saved "$dir" "$t")
      if [ "$after" -eq "$before" ] && grep -A1 -- "^--- FAIL: $t " "$out" | tail -1 | grep -qx '[[:space:]]*context deadline exceeded'; then
        echo "fuzz $t: the coordinator reported its own deadline (go.dev/issue/75804), no failing input: passed"
        break
      fi
      if [ "$after" -gt "$before" ] || [ "$attempt" = 2 ]; then
        tail -40 "$out"
        $GO test -run "^$t\$" "$pkg" || true # the saved input, replayed
        exit 1
      fi
      echo "fuzz $t failed without a failing input (the engine's trouble); its output ends:"
      tail -15 "$out"
    done
  done
done
