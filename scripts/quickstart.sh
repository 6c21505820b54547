#!/usr/bin/env bash
# The main job end to end: build mobykit and its system images, start the plugins, and boot
# the local 3-VM cluster of examples/clusters/local (QEMU; TCG works, no root networking),
# then show each member answering over HTTP. The cluster keeps running afterwards;
#   scripts/quickstart.sh --down     destroys it and stops the plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/bin:/usr/local/go/bin:$PATH
group=web

if [[ ${1:-} == --down ]]; then
  mobykit group destroy "$group" || true
  mobykit plugin stop group instance-qemu flavor-moby || true
  exit 0
fi

scripts/deps.sh
echo "==> building mobykit"
go build -o bin/mobykit ./cmd/mobykit

echo "==> building the system images (cached by input hash; the first run fetches Debian packages)"
mobykit pkg build images/kernel images/init images/runc images/sysctl images/dhcpcd \
  images/metadata images/bootloader examples/clusters/local/web

echo "==> starting the plugins: group controller, instance-qemu, flavor-moby"
running=$(mobykit plugin ls 2>/dev/null || true)
for p in group instance-qemu flavor-moby; do
  grep -qw "$p" <<<"$running" || mobykit plugin start --detach "$p"
done

echo "==> committing the group (3 VMs; flavor-moby builds examples/clusters/local/web.yml once)"
# The group file names its spec relative to itself ("web.yml"): the commit reads it from
# there and sends its content, whatever folder this runs from.
mobykit group commit examples/clusters/local/group.json

echo "==> waiting for 3 healthy members (under TCG this takes about a minute)"
state=${INFRAKIT_HOME:-$HOME/.infrakit}/state/instance-qemu/instances
deadline=$((SECONDS + 600))
while :; do
  ports=$(cat "$state"/*/launch.json 2>/dev/null | grep -o '127\.0\.0\.1:[0-9]*' | sort -u || true)
  ok=0
  for p in $ports; do curl -sf -m 2 "http://$p/" >/dev/null && ok=$((ok + 1)); done
  ((ok >= 3)) && break
  ((SECONDS > deadline)) && { echo "members not serving after 10 minutes; see mobykit group describe $group" >&2; exit 1; }
  sleep 3
done
mobykit group describe "$group"
for p in $ports; do echo "--- http://$p/"; curl -s "http://$p/"; echo; done
cat <<MSG

The cluster is up. Roll it onto a new image:
  sed -i 's/VERSION=1/VERSION=2/' examples/clusters/local/web.yml
  mobykit group commit --wait examples/clusters/local/group.json
Tear it down:  scripts/quickstart.sh --down
MSG
