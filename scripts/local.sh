#!/usr/bin/env bash
# Runs StreamCDP locally on real services with demo traffic.
#
# Installs what is missing (Debian packages, the ClickHouse engine), starts the
# local stack in .cdp/ (or $CDP_LOCAL_DIR), creates the topics, and streams
# generated customer events into the raw topic until Ctrl-C. The stack keeps
# running afterwards: `bin/cdp local status`, `bin/cdp local down`.
#
#   scripts/local.sh [--rate N]   events per second of demo traffic (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
rate=50
if [ "${1:-}" = "--rate" ]; then rate=$2; fi

step() { printf '\n==> %s\n' "$*"; }

step "building cdp"
mkdir -p bin
go build -o bin/cdp ./cmd/cdp

step "installing missing dependencies"
bin/cdp local setup

step "starting the local stack"
bin/cdp local up
eval "$(bin/cdp local env)"

step "creating topics"
bin/cdp topology apply

step "streaming demo traffic at $rate events/s into ${CDP_TOPIC_PREFIX:-cdp}.events.raw (Ctrl-C stops it; the stack keeps running)"
exec bin/cdp generate --persons 2000 --events 100000000 --rate "$rate" --seed "$(date +%s)"
