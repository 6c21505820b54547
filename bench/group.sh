#!/bin/sh
# Group controller benchmark: a 1,000-instance group against the in-process fake plugin,
# commit -> converged and a full rolling update (MaxSurge 10% and MaxSurge 1). Prints seconds,
# plugin calls per instance and supervision passes for each half (see group/bench_test.go);
# then 10 groups of 1,000 on the file store next to a 3-member etcd (seconds and etcd/file
# ratios, aim within 2x), and the failover time on etcd (leader stopped or killed -> first
# action of the new leader, in seconds and lease periods, aim under 2).
set -eu
cd "$(dirname "$0")/.."
exec go test ./group/ -run '^$' -bench 'BenchmarkThousandInstances|BenchmarkTenGroupsStores|BenchmarkFailover' -benchtime 1x "$@"
