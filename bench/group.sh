#!/bin/sh
# Group controller benchmark: a 1,000-instance group against the in-process fake plugin,
# commit -> converged and a full rolling update (MaxSurge 10% and MaxSurge 1). Prints seconds,
# plugin calls per instance and supervision passes for each half (see group/bench_test.go).
set -eu
cd "$(dirname "$0")/.."
exec go test ./group/ -run '^$' -bench BenchmarkThousandInstances -benchtime 1x "$@"
