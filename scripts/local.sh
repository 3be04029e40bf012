#!/usr/bin/env bash
# Runs StreamCDP locally on real services with demo traffic: `cdp dev`.
#
# Installs what is missing (Debian packages, the ClickHouse engine), builds
# bin/cdp and runs `cdp dev`: the local stack in .cdp-dev/ (or $CDP_DEV_DIR),
# the ClickHouse migrations and the topology, every processor and the profile
# API, the console page, and generated customer traffic, with a live summary
# refreshed every second. Ctrl-C stops everything; running it again resumes
# on the same data.
#
#   scripts/local.sh [cdp dev flags]   e.g. --rate 500 (default 200 events/s)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

step() { printf '\n==> %s\n' "$*"; }

step "building cdp"
mkdir -p bin
go build -o bin/cdp ./cmd/cdp

step "installing missing dependencies"
bin/cdp local setup

step "cdp dev $*"
exec bin/cdp dev "$@"
