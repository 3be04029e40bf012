#!/usr/bin/env bash
# Runs every check and test of StreamCDP against real services.
#
# On a fresh Debian machine with Go, apt and npm this installs what is
# missing (Debian packages, the ClickHouse engine, staticcheck), starts an
# isolated local stack on free ports, runs go vet, staticcheck and
# `go test -race ./...` against it, and stops the stack, whatever happens.
#
#   scripts/test.sh                 everything
#   scripts/test.sh ./schemas/...   only some packages (vet/staticcheck skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
STATICCHECK_VERSION=v0.8.2

step() { printf '\n==> %s\n' "$*"; }

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

step "go test -race"
go test -race -count=1 -timeout 20m "${@:-./...}"
