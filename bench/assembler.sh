#!/bin/sh
# Benchmark `mobykit build` on ~100 MB of image files: cold (registry on
# loopback), warm (images cached), rebuild, incremental (one file, one
# service). Prints seconds, MB/s, initramfs size and peak RSS per scenario.
set -eu
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/mobykit" ./cmd/mobykit
go run ./bench/assembler -mobykit "$bin/mobykit" "$@"
