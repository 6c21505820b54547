#!/usr/bin/env bash
# Runs every fuzz target in the repository for a short time (FUZZTIME, default 8s), each from
# its committed corpus (testdata/fuzz/FuzzX) plus its f.Add seeds. A failure leaves the
# crashing input under testdata/fuzz/FuzzX/ to commit as a regression case.
# Usage: scripts/fuzz.sh [PACKAGE-PATTERN]   e.g. scripts/fuzz.sh ./assembler/...
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
fuzztime=${FUZZTIME:-8s}
pattern=${1:-./...}
n=0
# Each line: package directory and target name.
while read -r dir target; do
  [[ -n "$target" ]] || continue
  n=$((n + 1))
  echo "fuzz: $dir $target ($fuzztime)"
  for try in 1 2; do
    before=$( (ls "$dir/testdata/fuzz/$target" 2>/dev/null || true) | wc -l)
    # -fuzzminimizetime 100x: each minimization of a new input is 100 runs, not up to 60 s.
    # Go ends a run with "context deadline exceeded" when -fuzztime runs out mid-minimization,
    # which a cold fuzz cache (every input new) made likely: seen twice in a row with a fresh
    # HOME. A failing input is still written, minimized within those runs.
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 100x "./$dir" > /tmp/fuzz.$$.log 2>&1; then break; fi
    after=$( (ls "$dir/testdata/fuzz/$target" 2>/dev/null || true) | wc -l)
    # Go's fuzzer sometimes ends a run with "context deadline exceeded" and no failing input
    # when a worker is slow to stop on a loaded machine: that is not a finding, try once more.
    # A real failure always writes its input under testdata/fuzz.
    if [[ $try == 1 && $after == "$before" ]] && grep -q 'context deadline exceeded' /tmp/fuzz.$$.log; then
      echo "fuzz: $target: the fuzzer stopped with 'context deadline exceeded' and no failing input; running it again"
      continue
    fi
    cat /tmp/fuzz.$$.log >&2; rm -f /tmp/fuzz.$$.log
    echo "fuzz: $target in ./$dir failed; the input is under ./$dir/testdata/fuzz/$target/" >&2
    exit 1
  done
done < <(go list -f '{{.Dir}}' "$pattern" | while read -r d; do
  { grep -ho '^func Fuzz[A-Za-z0-9_]*(' "$d"/*_test.go 2>/dev/null || true; } | sed 's/^func \(.*\)(/\1/' |
    while read -r f; do echo "${d#$PWD/} $f"; done
done)
rm -f /tmp/fuzz.$$.log
[[ $n -gt 0 ]] || { echo "fuzz: no fuzz targets found under $pattern" >&2; exit 1; }
echo "fuzz: $n targets ran for $fuzztime each"
