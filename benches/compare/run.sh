#!/usr/bin/env bash
# Side by side, one command (issue 19). In process: groundcrew in memory and
# on SQLite beside the plain-tokio floor and apalis 1.0 (memory, SQLite); the
# daemon's full build of a generated feed beside writing its bytes.
# Durable: N no-op tasks on one throwaway PostgreSQL 15 (fsync on) with 1 and
# 3 groundcrew nodes, graphile-worker and apalis-postgres. Prints one report
# with every peer as a ratio to groundcrew and writes it to benches/RESULTS.md.
# Usage: benches/compare/run.sh [N] (env: BATCH, LIMIT, PG_BIN, INPROC_N,
# SQLITE_PEER_N, FEED_LINES; PROFILE=DIR records perf during the one-node
# drain; STATEMENTS=FILE writes pg_stat_statements' top statements per
# database at the end). Cleans up its cluster and processes on exit. Not part of CI.
set -euo pipefail
N=${1:-${N:-20000}}
BATCH=${BATCH:-1000}
LIMIT=${LIMIT:-16}
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

echo "building groundcrew (release) and the apalis drain..." >&2
(cd "$ROOT" && cargo build --release --quiet --bin groundcrew)
GC="$ROOT/target/release/groundcrew"
(cd "$HERE/apalis" && cargo build --release --quiet)
APALIS="$HERE/apalis/target/release/apalis-drain"
RESULTS="$WORK/results.jsonl"
# tag SYSTEM: adds "system" (and "tasks") to one JSON result line on stdin.
tag() { python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["system"]=sys.argv[1]; r.setdefault("tasks", int(sys.argv[2])); print(json.dumps(r))' "$1" "$N"; }

INPROC_N=${INPROC_N:-10000}
SQLITE_PEER_N=${SQLITE_PEER_N:-2000}  # apalis-sqlite drains a few hundred per second
echo "in process: groundcrew and the tokio floor..." >&2
(cd "$ROOT" && cargo bench --quiet --bench inproc_drain -- "$INPROC_N") | grep '^{' >>"$RESULTS"
echo "in process: apalis..." >&2
for l in 2 16; do "$APALIS" memory "$INPROC_N" "$l" >>"$RESULTS"; done
"$APALIS" sqlite "$SQLITE_PEER_N" "$LIMIT" >>"$RESULTS"
"$APALIS" sqlite-full "$SQLITE_PEER_N" "$LIMIT" >>"$RESULTS"
FEED_LINES=${FEED_LINES:-500000}
echo "the daemon's full build of a $FEED_LINES-line feed..." >&2
(cd "$ROOT" && cargo bench --quiet --bench feed_daemon -- "$FEED_LINES") | grep '^{' >>"$RESULTS"
echo "the daemon's admin API: submits, batches, the panel..." >&2
(cd "$ROOT" && cargo bench --quiet --bench http_submit -- "${HTTP_SECS:-5}") | grep '^{' >>"$RESULTS"
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
for db in gc1 gc3 gw ap; do $(psql_in postgres) -c "CREATE DATABASE $db"; done
$(psql_in postgres) -c "CREATE EXTENSION pg_stat_statements"
# statements: each database's top statements by total time, into $STATEMENTS.
statements() {
  [ -n "${STATEMENTS:-}" ] || return 0
  $(psql_in postgres) -P pager=off -F ' | ' -c "
    SELECT d.datname, round(total_exec_time::numeric, 1) AS total_ms, calls, rows,
           round((total_exec_time / greatest(calls, 1))::numeric, 3) AS ms_per_call,
           shared_blks_hit + shared_blks_read AS blocks,
           regexp_replace(left(query, 160), '\s+', ' ', 'g') AS query
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     ORDER BY d.datname, total_exec_time DESC" >"$STATEMENTS"
}
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }

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
echo "groundcrew, 3 nodes..." >&2
n3=(); for nm in a b c; do n3+=("$(start_node gc3 "$nm")"); done
R3=$(python3 "$HERE/drain.py" "$N" "$BATCH" "$(psql_in gc3)" "${n3[@]}")
stop_nodes
echo "graphile-worker $GW_VERSION..." >&2
cp "$HERE/graphile.mjs" "$WORK/npm/"
RG=$(cd "$WORK/npm" && node graphile.mjs "$(url gw)" "$N" "$BATCH" "$LIMIT" 0 2>/dev/null | tail -1)
$(psql_in postgres) -c "DROP DATABASE gw" -c "CREATE DATABASE gw"
RL=$(cd "$WORK/npm" && node graphile.mjs "$(url gw)" "$N" "$BATCH" "$LIMIT" 500 2>/dev/null | tail -1)

echo "apalis-postgres..." >&2
"$APALIS" postgres "$N" "$LIMIT" "$(url ap)" >>"$RESULTS"
statements

{ echo "$R1" | tag groundcrew-postgres-1; echo "$R3" | tag groundcrew-postgres-3
  echo "$RG" | tag graphile-worker; echo "$RL" | tag graphile-worker-localqueue; } >>"$RESULTS"
python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  machine "$(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(uname -r)" \
  groundcrew "$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' (dirty)')" \
  rustc "$(rustc --version)" apalis "1.0.0 (apalis-sqlite, apalis-postgres 1.0.0)" \
  graphile-worker "$GW_VERSION (Node.js $(node --version))" postgresql "$PG_VERSION" \
  "durable workload" "$N tasks, batches of $BATCH via the API / addJobs / push_bulk, $LIMIT workers per process" \
  >"$WORK/versions.json"
python3 "$HERE/report.py" "$RESULTS" "$WORK/versions.json" | tee "$ROOT/benches/RESULTS.md"
