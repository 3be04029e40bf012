#!/usr/bin/env bash
# Runs StreamCDP locally on real services with demo traffic.
#
# Installs what is missing (Debian packages, the ClickHouse engine), starts the
# local stack in .cdp/ (or $CDP_LOCAL_DIR), creates the topics, starts the
# processors that exist (cdp run all), and streams generated customer events
# into the raw topic until Ctrl-C. The stack keeps running afterwards:
# `bin/cdp local status`, `bin/cdp local down`.
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

step "starting the processors (cdp run all; log in .cdp/logs/processors.log; metrics on :9100)"
mkdir -p .cdp/logs
bin/cdp run all --instance local >>.cdp/logs/processors.log 2>&1 &
processors=$!
trap 'kill -TERM $processors 2>/dev/null; wait $processors 2>/dev/null' EXIT

step "streaming demo traffic at $rate events/s into ${CDP_TOPIC_PREFIX:-cdp}.events.raw (Ctrl-C stops traffic and processors; the stack keeps running)"
bin/cdp generate --persons 2000 --events 100000000 --rate "$rate" --seed "$(date +%s)"
