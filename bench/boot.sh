#!/bin/sh
# Boot benchmark of the system images (issue 3): time from QEMU's start to the first service
# running for examples/hello.yml (gzip and zstd initramfs), next to a bare busybox /init printing
# a line on the same kernel and QEMU settings (TCG, 1 vCPU, 1 GiB), and the initramfs size.
# Target: s-to-first-service within 1.2x the baseline's s-to-line; hello.yml initramfs < 15 MB.
#
#   bench/boot.sh [COUNT]     # boots per configuration, default 3
set -eu
cd "$(dirname "$0")/.."
count=${1:-3}
go test -run '^$' -bench 'BenchmarkBoot' -benchtime "${count}x" -timeout 30m ./examples/ |
	grep -E '^(Benchmark|ok|FAIL|---)' 
