#!/usr/bin/env bash
# The house habits, checked: gofmt, goimports (standard library, then third party, then
# github.com/mobykit/mobykit, each in its own block), go vet and staticcheck. goimports and
# staticcheck are pinned as tools in go.mod (`go tool ...`), so every machine runs the same
# versions. Exits non-zero, listing what is wrong, if any check finds something.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
fail=0
files=$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')

out=$(gofmt -l $files)
if [[ -n "$out" ]]; then echo "gofmt would change (run gofmt -w):"; echo "$out"; fail=1; fi >&2

out=$(go tool goimports -l -local github.com/mobykit/mobykit $files)
if [[ -n "$out" ]]; then
  echo "goimports would change (run go tool goimports -w -local github.com/mobykit/mobykit FILE):"
  echo "$out"; fail=1
fi >&2

go vet ./... || fail=1
go tool staticcheck ./... || fail=1

if [[ $fail != 0 ]]; then echo "lint: failed" >&2; exit 1; fi
echo "lint: gofmt, goimports, vet, staticcheck clean"
