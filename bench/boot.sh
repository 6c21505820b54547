#!/bin/sh
# Boot benchmark of the system images (issue 3): time from QEMU's start to the first service
# running and to every service running for examples/hello.yml (gzip, zstd, lz4 and
# uncompressed initramfs), next to a bare busybox /init printing a line on the same kernel and QEMU settings
# (TCG, 1 vCPU, 1 GiB), and the initramfs size.
# Target: s-to-first-service within 1.2x the baseline's s-to-line; hello.yml initramfs < 15 MB.
#
#   bench/boot.sh [COUNT]     # boots per configuration, default 3
set -eu
cd "$(dirname "$0")/.."
count=${1:-3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
go test -run '^$' -bench 'BenchmarkBoot' -benchtime "${count}x" -timeout 30m ./examples/ >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
	cat "$log" # the failure's reason and the console
	exit "$status"
fi
grep -E '^(Benchmark|ok)' "$log"
