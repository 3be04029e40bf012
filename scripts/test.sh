#!/usr/bin/env bash
# Runs every check and test of StreamCDP against real services.
#
# On a fresh Debian machine with Go, apt and npm this installs what is
# missing (Debian packages, the ClickHouse engine, staticcheck), starts an
# isolated local stack on free ports, runs go vet, staticcheck and
# `go test -race ./...` against it (two CPU-bound, single-goroutine
# packages without -race, see below), and stops the stack, whatever happens.
#
#   scripts/test.sh                 everything
#   scripts/test.sh ./schemas/...   only some packages (vet/staticcheck skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
STATICCHECK_VERSION=v0.8.2

step() { printf '\n==> %s  [%s]\n' "$*" "$(date +%T)"; }

step "building cdp"
mkdir -p bin
go build -o bin/cdp ./cmd/cdp

step "installing missing dependencies (cdp local setup)"
bin/cdp local setup

stack=$(mktemp -d "${TMPDIR:-/tmp}/cdp-test-stack.XXXXXX")
cleanup() {
	step "stopping the test stack"
	bin/cdp local down --dir "$stack" || true
	rm -rf "$stack"
}
trap cleanup EXIT

step "starting an isolated stack on free ports in $stack"
bin/cdp local up --dir "$stack" --ports auto
eval "$(bin/cdp local env --dir "$stack")"
export CDP_BIN="$PWD/bin/cdp"

if [ $# -eq 0 ]; then
	step "go vet"
	go vet ./...
	step "staticcheck $STATICCHECK_VERSION"
	command -v staticcheck >/dev/null && staticcheck -version | grep -q "${STATICCHECK_VERSION#v}" ||
		go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	staticcheck ./...
	step "gofmt"
	unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
	if [ -n "$unformatted" ]; then
		echo "gofmt would change: $unformatted"
		exit 1
	fi
fi

if [ $# -gt 0 ]; then
	step "go test -race $*"
	exec go test -race -count=1 -timeout 20m "$@"
fi

# Packages of single-goroutine, CPU-bound code (the traffic generator, the
# lifetime-value fits) run without the race detector: it has nothing to
# find there and makes them 10-80x slower (internal/generate: 4 s plain,
# 340 s under -race on 2 cores). Everything else runs under -race.
norace='github.com/streamcdp/streamcdp/internal/generate github.com/streamcdp/streamcdp/internal/ml/clv'
for p in $norace; do
	if grep -qE '^[[:space:]]*go func|sync\.|errgroup' $(go list -f '{{range .GoFiles}}{{$.Dir}}/{{.}} {{end}}' "$p"); then
		echo "$p starts goroutines or uses sync: it must run under -race (remove it from norace)"
		exit 1
	fi
done
# -v for the timings: the full output goes to a file; the console gets
# everything but the lines of passing tests, then the slowest tests.
log=$(mktemp "${TMPDIR:-/tmp}/cdp-test.XXXXXX.log")
set +e
step "go test (no race detector): $norace"
go test -count=1 -timeout 10m -v $norace >"$log" 2>&1
rc=$?
step "go test -race"
go test -race -count=1 -timeout 20m -v $(go list ./... | grep -vxF -f <(tr ' ' '\n' <<<"$norace")) >>"$log" 2>&1
rc2=$?
set -e
grep -vE '^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP))' "$log" || true
step "slowest tests (full output: $log)"
grep -E '^--- PASS' "$log" | sort -t'(' -k2 -rn | head -15 || true
[ $rc -eq 0 ] && [ $rc2 -eq 0 ]
