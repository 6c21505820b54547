#!/usr/bin/env bash
# Runs mobykit's whole test suite, QEMU, registry and AWS-emulator tests included: installs the
# system packages it needs, starts one docker-registry and one moto_server on loopback for the
# run, then the lint checks (gofmt, goimports, vet, staticcheck: scripts/lint.sh), go test (the
# etcd quorum test in a phase of its own, see below), and every fuzz target for a short time
# (scripts/fuzz.sh, FUZZTIME). Extra arguments go to one go test of every package (e.g. -run,
# -v) and skip the fuzz pass (a focused run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
scripts/deps.sh

work=$(mktemp -d /tmp/mobykit-test.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "$2 did not start" >&2; return 1; }

# One registry for the run (tests push to repositories named after themselves).
port=$(free_port)
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$port/v2/" docker-registry
export MOBYKIT_TEST_REGISTRY=127.0.0.1:$port

# One AWS API emulator for the run, if this machine's Python has it.
moto=$(command -v moto_server || ls /root/.pyenv/shims/moto_server 2>/dev/null || true)
if [[ -n "$moto" ]]; then
  mport=$(free_port)
  "$moto" -H 127.0.0.1 -p "$mport" >"$work/moto.log" 2>&1 & pids+=($!)
  wait_http "http://127.0.0.1:$mport/moto-api/" moto_server
  export MOBYKIT_MOTO_ENDPOINT=http://127.0.0.1:$mport
else
  echo "note: moto_server (Python moto[server]) not found: the AWS integration tests will skip" >&2
fi

scripts/lint.sh
if [[ $# -gt 0 ]]; then
  go test -timeout 40m "$@" ./...
  exit
fi
# Every package, in parallel, but the etcd quorum test; then that test alone. It bounds how long
# its three TCG members go without a leader while they are replaced, which only means something
# when they get the 2 cores: next to other packages' builds, a starved member misses heartbeats
# whatever etcd and the group controller do.
go test -timeout 40m -skip '^TestEtcdCluster$' ./...
go test -timeout 20m -run '^TestEtcdCluster$' ./examples/clusters/etcd/
scripts/fuzz.sh
