#!/usr/bin/env bash
# Side by side, one command (issue 19): drains N durable no-op tasks on one
# throwaway PostgreSQL 15 (fsync on) with 1 and 3 groundcrew nodes and with
# graphile-worker, and prints one table with ratios to graphile-worker.
# Usage: benches/compare/run.sh [N] (env: BATCH, LIMIT, PG_BIN; PROFILE=DIR
# records perf during the one-node drain; STATEMENTS=DIR writes each
# phase's top statements from pg_stat_statements to DIR/<db>.txt; PHASES
# picks phases, default "gc1 gc3 gw"). Cleans up its cluster and processes
# on exit. Not part of CI.
set -euo pipefail
N=${1:-${N:-20000}}
BATCH=${BATCH:-1000}
LIMIT=${LIMIT:-16}
PHASES=${PHASES:-gc1 gc3 gw}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/benches/compare"
WORK=$(mktemp -d /tmp/gc-compare.XXXXXX)
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
# Nodes start in command substitutions (subshells): their pids go to files.
node_pids() { cat "$WORK"/node-*/pid 2>/dev/null || true; }
cleanup() {
  for p in $(node_pids); do kill "$p" 2>/dev/null || true; done
  for p in $(node_pids); do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  [ -f "$WORK/pg.pid" ] && as_owner "$PG_BIN/pg_ctl" stop -s -m immediate -D "$WORK/data" 2>/dev/null
  [ -f "$WORK/pg.pid" ] && wait "$(cat "$WORK/pg.pid")" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

chmod 755 "$WORK"; mkdir -p "$WORK/data" "$WORK/sock"
[ "$(id -u)" = 0 ] && chown nobody "$WORK/data" "$WORK/sock"

echo "building groundcrew (release)..." >&2
(cd "$ROOT" && cargo build --release --quiet --bin groundcrew)
GC="$ROOT/target/release/groundcrew"
if [ ! -d "$WORK/npm/node_modules/graphile-worker" ]; then
  echo "installing graphile-worker..." >&2
  mkdir -p "$WORK/npm" && (cd "$WORK/npm" && npm install --silent --no-audit --no-fund graphile-worker@0.18 >/dev/null)
fi
GW_VERSION=$(node -p "require('$WORK/npm/node_modules/graphile-worker/package.json').version")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_owner "$PG_BIN/initdb" -U postgres -N -A trust -D "$WORK/data" >/dev/null
as_owner "$PG_BIN/postgres" -D "$WORK/data" -p "$PORT" -k "$WORK/sock" \
  -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on \
  -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all \
  >"$WORK/pg.log" 2>&1 &
echo $! >"$WORK/pg.pid"
for _ in $(seq 600); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.1; done
PG_VERSION=$("$PG_BIN/postgres" --version)
psql_in() { echo "psql -X -A -t -q -h 127.0.0.1 -p $PORT -U postgres -d $1"; }
for db in gc1 gc3 gw; do $(psql_in postgres) -c "CREATE DATABASE $db"; done
$(psql_in postgres) -c "CREATE EXTENSION pg_stat_statements"
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }
has() { case " $PHASES " in *" $1 "*) return 0;; esac; return 1; }
# statements DB [NAME]: the phase's statements by total time into
# $STATEMENTS/NAME.txt (default DB.txt), then resets.
statements() {
  [ -n "${STATEMENTS:-}" ] || return 0
  mkdir -p "$STATEMENTS"
  $(psql_in postgres) -P pager=off -F ' | ' -c "
    SELECT round(total_exec_time::numeric, 1) AS total_ms, calls, rows,
           round((total_exec_time / greatest(calls, 1))::numeric, 3) AS ms_per_call,
           shared_blks_hit + shared_blks_read AS blocks,
           regexp_replace(left(query, 160), '\s+', ' ', 'g') AS query
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = '$1' ORDER BY total_exec_time DESC LIMIT 30" >"$STATEMENTS/${2:-$1}.txt"
  $(psql_in postgres) -c "SELECT pg_stat_statements_reset()" >/dev/null
}
R1='{"per_s": 0, "seconds": 0, "succeeded": 0}'; R3=$R1; RG=$R1; RL=$R1

# start_node DB NAME: starts one node, prints "base,token".
start_node() {
  local dir="$WORK/node-$1-$2"; mkdir -p "$dir/artifacts"
  GROUNDCREW_STORE=$(url "$1") GROUNDCREW_FEEDS='[]' GROUNDCREW_NODE=$2 \
  GROUNDCREW_POOLS__BACKGROUND=$LIMIT GROUNDCREW_HTTP__MAX_BODY_BYTES=16777216 \
  GROUNDCREW_ARTIFACTS__DIR="$dir/artifacts" RUST_LOG=warn \
    ${PERF_WRAP:-} "$GC" serve --bind 127.0.0.1:0 --data-dir "$dir" >"$dir/out" 2>"$dir/err" &
  echo $! >"$dir/pid"
  for _ in $(seq 300); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.1; done
  echo "$(sed -n 's/^groundcrew listening on //p' "$dir/out" | head -1),$(cat "$dir/admin.token")"
}

stop_nodes() {
  for p in $(node_pids); do kill -INT "$p" 2>/dev/null || true; done
  for p in $(node_pids); do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  rm -f "$WORK"/node-*/pid
}

if has gc1; then
echo "groundcrew, 1 node..." >&2
n1=$(start_node gc1 a); [ "${n1#,}" = "$n1" ] || { cat "$WORK"/node-gc1-a/err >&2; exit 1; }
if [ -n "${PROFILE:-}" ]; then
  # PROFILE=DIR: the whole machine sampled during the one-node drain.
  mkdir -p "$PROFILE"
  perf record -q -a -g -F 499 -o "$PROFILE/perf.data" 2>/dev/null &
  PERF=$!; sleep 0.5
fi
R1=$(python3 "$HERE/drain.py" "$N" "$BATCH" "$(psql_in gc1)" "$n1")
if [ -n "${PROFILE:-}" ]; then
  kill -INT "$PERF"; wait "$PERF" || true
  perf report -i "$PROFILE/perf.data" --stdio --sort comm --no-children 2>/dev/null >"$PROFILE/by-process.txt" || true
  perf report -i "$PROFILE/perf.data" --stdio --comm groundcrew,tokio-runtime-w --no-children \
    --sort dso,symbol -g none --percent-limit 0.7 2>/dev/null >"$PROFILE/groundcrew.txt" || true
  perf report -i "$PROFILE/perf.data" --stdio --comm postgres --no-children \
    --sort symbol -g none --percent-limit 1 2>/dev/null >"$PROFILE/postgres.txt" || true
fi
stop_nodes
statements gc1
fi
if has gc3; then
echo "groundcrew, 3 nodes..." >&2
n3=(); for nm in a b c; do n3+=("$(start_node gc3 "$nm")"); done
R3=$(python3 "$HERE/drain.py" "$N" "$BATCH" "$(psql_in gc3)" "${n3[@]}")
stop_nodes
statements gc3
fi
if has gw; then
echo "graphile-worker $GW_VERSION..." >&2
cp "$HERE/graphile.mjs" "$WORK/npm/"
RG=$(cd "$WORK/npm" && node graphile.mjs "$(url gw)" "$N" "$BATCH" "$LIMIT" 0 2>/dev/null | tail -1)
statements gw
$(psql_in postgres) -c "DROP DATABASE gw" -c "CREATE DATABASE gw"
RL=$(cd "$WORK/npm" && node graphile.mjs "$(url gw)" "$N" "$BATCH" "$LIMIT" 500 2>/dev/null | tail -1)
statements gw gw-localqueue
fi

python3 - "$N" "$LIMIT" "$GW_VERSION" "$PG_VERSION" "$R1" "$R3" "$RG" "$RL" <<'PY'
import json, sys
n, limit, gwv, pgv = sys.argv[1:5]
r1, r3, rg, rl = (json.loads(a) for a in sys.argv[5:9])
base = rg["per_s"] or 1
print(f"{n} durable no-op tasks, batches via the API / addJobs, {limit} workers per process; {pgv}, fsync=on\n")
print("| system | tasks/s | seconds | × graphile-worker (defaults) |")
print("|---|---|---|---|")
for name, r in [("groundcrew, 1 node", r1), ("groundcrew, 3 nodes", r3),
                (f"graphile-worker {gwv}, defaults", rg),
                (f"graphile-worker {gwv}, localQueue 500", rl)]:
    print(f"| {name} | {r['per_s']:.0f} | {r['seconds']:.2f} | {r['per_s']/base:.2f}× |")
for name, r in [("1 node", r1), ("3 nodes", r3)]:
    if r["per_s"] and r["succeeded"] != int(n):
        print(f"\nWARNING: groundcrew {name}: {r['succeeded']} of {n} succeeded")
PY
