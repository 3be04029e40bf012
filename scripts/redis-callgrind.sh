#!/usr/bin/env bash
# Counts the instructions Redis executes for a command, under callgrind.
#
# Timings on a shared 2-core machine move by a third from run to run; an
# instruction count does not. This starts a redis-server of its own under
# valgrind --tool=callgrind (with the local stack's persistence:
# appendonly, appendfsync always, lazyfree), runs the command with
# CDP_REDIS_URL pointing at it, stops Redis and prints the total. Needs
# valgrind (apt install valgrind) and the rest of the stack's environment
# (eval "$(cdp local env)"): only Redis is replaced. Redis runs about 50
# times slower under callgrind, so keep the command small.
#
#   scripts/redis-callgrind.sh -- env CDP_TRAFFIC_EVENTS=40000 \
#     go test -run '^$' -bench ResolveTraffic -benchtime 1x ./processors/identity/
#
# REDIS_CALLGRIND_CLUSTER=1 runs Redis in cluster mode, one node owning
# every slot, to count what cluster mode adds.
#
# callgrind_annotate --inclusive=yes <dir>/callgrind.out shows where the
# instructions go (Lua's internals have no symbols in Debian's build).
set -euo pipefail
[[ ${1:-} == -- ]] && shift
if [[ $# -eq 0 ]]; then
  sed -n '2,21p' "$0" >&2
  exit 2
fi
command -v valgrind >/dev/null || { echo "redis-callgrind: valgrind is not installed (apt install valgrind)" >&2; exit 1; }

dir=$(mktemp -d /tmp/redis-callgrind.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cluster=()
[[ ${REDIS_CALLGRIND_CLUSTER:-} == 1 ]] && cluster=(--cluster-enabled yes --cluster-config-file "$dir/nodes.conf")
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
  redis-server --port "$port" --dir "$dir" --save '' --appendonly yes --appendfsync always \
  --lazyfree-lazy-expire yes --lazyfree-lazy-user-del yes "${cluster[@]}" >"$dir/valgrind.log" 2>&1 &
vg=$!
for _ in $(seq 200); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.2
done
redis-cli -p "$port" ping >/dev/null || { echo "redis-callgrind: Redis did not start, see $dir/valgrind.log" >&2; exit 1; }
if [[ ${#cluster[@]} -gt 0 ]]; then
  redis-cli -p "$port" cluster addslotsrange 0 16383 >/dev/null
  for _ in $(seq 200); do
    redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' && break
    sleep 0.2
  done
fi

status=0
CDP_REDIS_URL="redis://127.0.0.1:$port/0" "$@" || status=$?
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$vg" || true
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out")
echo "redis-callgrind: Redis executed ${total:-?} instructions (profile: $dir/callgrind.out)"
exit "$status"
