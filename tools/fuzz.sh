#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module, one after another, each for FUZZTIME.
#
#   tools/fuzz.sh                      # every target, 10m each, -parallel=1
#   FUZZTIME=30s tools/fuzz.sh         # a quick pass
#   FUZZ='Origin|Bearer' tools/fuzz.sh # only targets whose name matches (egrep)
#   tools/fuzz.sh -list                # print the targets and exit
#
# Targets are found, not listed: every package with a `func Fuzz` in a _test.go file is
# asked for its targets with `go test -list`, so a new target is picked up by itself.
# The run stops at the first target that fails, naming the failing input Go wrote under
# testdata/fuzz. One failure is not a finding: Go's coordinator can report a bare
# "context deadline exceeded" when -fuzztime ends while a starved worker is mid-call
# (golang/go#75804, fixed in Go 1.27); with no failing input written, that target is
# reported as "deadline" and the run goes on.
set -uo pipefail

FUZZTIME=${FUZZTIME:-10m}
PARALLEL=${FUZZPARALLEL:-1}
MATCH=${FUZZ:-.}
GO=${GO:-go}

cd "$(dirname "$0")/.."

targets() {
	local dirs
	dirs=$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./gen/' | xargs -n1 dirname | sort -u)
	for d in $dirs; do
		# A package none of whose targets match is not an error.
		$GO test -list '^Fuzz' "$d" | { grep '^Fuzz' || true; } | { grep -E -- "$MATCH" || true; } | sed "s|^|$d |"
	done
}

list=$(targets) || { echo "fuzz: cannot list the targets" >&2; exit 1; }
if [ -z "$list" ]; then
	echo "fuzz: no target matches FUZZ=$MATCH" >&2
	exit 1
fi
if [ "${1:-}" = "-list" ]; then
	echo "$list"
	exit 0
fi

n=$(echo "$list" | wc -l)
echo "fuzz: $n targets, $FUZZTIME each, -parallel=$PARALLEL, $(date -u +%FT%TZ), $($GO version)"
summary=""
i=0
while read -r pkg name; do
	i=$((i + 1))
	echo "=== [$i/$n] $name ($pkg) $(date -u +%T)"
	out=$(mktemp)
	$GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL" -timeout 0 "$pkg" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	execs=$(grep -o 'execs: [0-9]*' "$out" | tail -1 | cut -d' ' -f2)
	elapsed=$(grep -o 'elapsed: [0-9hms]*' "$out" | tail -1 | cut -d' ' -f2)
	status=ok
	if [ "$rc" -ne 0 ]; then
		if grep -q 'Failing input written to' "$out"; then
			input=$(grep -o 'Failing input written to [^ ]*' "$out" | head -1 | cut -d' ' -f5)
			echo
			echo "fuzz: FAIL: $name in $pkg found a failing input: $pkg/$input"
			echo "fuzz: re-run it with: go test -run='$name/$(basename "$input")' $pkg"
			rm -f "$out"
			exit 1
		elif grep -q 'context deadline exceeded' "$out" && ! grep -q -- '--- FAIL: .*/' "$out"; then
			status="deadline"
		else
			echo
			echo "fuzz: FAIL: $name in $pkg did not run cleanly (exit $rc); see the output above"
			rm -f "$out"
			exit 1
		fi
	fi
	rm -f "$out"
	summary+=$(printf '%-24s %-28s %8s %12s  %s' "$name" "$pkg" "${elapsed:-?}" "${execs:-?}" "$status")$'\n'
done <<<"$list"

echo
echo "fuzz: done $(date -u +%FT%TZ)"
printf '%-24s %-28s %8s %12s  %s\n' target package elapsed execs result
printf '%s' "$summary"
