#!/bin/sh
# Local cluster benchmark: boots the 3-VM example (examples/clusters/local) under QEMU with the
# group controller at its default settings and prints one VM's boot-to-serving time, creating
# the group, rolling it (MaxSurge 1), replacing a killed VM, and roll/boot (the issue's target:
# at most 3.5). Takes minutes under TCG; run alone (-p 1).
set -eu
cd "$(dirname "$0")/.."
exec go test ./examples/clusters/local/ -p 1 -run '^$' -bench BenchmarkLocalCluster -benchtime 1x -timeout 30m -v "$@"
