"""Turns the JSON lines benches/compare/run.sh collected into one Markdown
report: the machine and versions, then each workload's systems with their
figures and every peer as a ratio to groundcrew from the same run. Prints
the report; run.sh also writes it to benches/RESULTS.md.

Usage: report.py RESULTS.jsonl VERSIONS.json"""
import json, sys

# Workload rows: (title, [(label, system key, limit)], groundcrew's key).
WORKLOADS = [
    ("no-op tasks in memory, limit 2", [
        ("groundcrew", "groundcrew-memory", 2),
        ("tokio task per job under a semaphore (floor)", "tokio-floor", 2),
        ("apalis 1.0, MemoryStorage", "apalis-memory", 2)]),
    ("no-op tasks in memory, limit 16", [
        ("groundcrew", "groundcrew-memory", 16),
        ("tokio task per job under a semaphore (floor)", "tokio-floor", 16),
        ("apalis 1.0, MemoryStorage", "apalis-memory", 16)]),
    ("durable no-op tasks on SQLite, limit 16", [
        ("groundcrew (WAL, synchronous=FULL)", "groundcrew-sqlite", 16),
        ("groundcrew, on a store holding 1M finished tasks", "groundcrew-sqlite-history", 16),
        ("apalis-sqlite 1.0 (its setup: synchronous=OFF)", "apalis-sqlite", 16),
        ("apalis-sqlite 1.0, synchronous=FULL", "apalis-sqlite-full", 16)]),
    ("1M duplicate submits over 1k targets", [
        ("groundcrew", "groundcrew-duplicates", 0),
        ("counting them in a HashMap (floor)", "hashmap-floor-duplicates", 0)]),
    ("full build of a generated ip2asn feed by the daemon (tasks = feed lines)", [
        ("groundcrew serve, empty data directory", "groundcrew-feed-build", None),
        ("writing the same bytes: temp files, one syncfs, renames (floor)",
         "write-bytes-floor", None),
        ("groundcrew serve, restart on the unchanged feed", "groundcrew-unchanged-restart",
         None)]),
    ("the daemon's admin API on SQLite, 3 keep-alive clients (pool paused)", [
        ("POST /api/v1/tasks, one task per request", "groundcrew-http-submit", None),
        ("POST /api/v1/tasks, arrays of 1,000", "groundcrew-http-batch", None),
        ("GET /healthz on the same clients (floor)", "http-floor", None),
        ("GET /api/v1/panel with 100 event streams open (tasks = requests)",
         "groundcrew-panel-get", None)]),
    ("durable no-op tasks on PostgreSQL (fsync=on)", [
        ("groundcrew, 1 node", "groundcrew-postgres-1", None),
        ("groundcrew, 3 nodes", "groundcrew-postgres-3", None),
        ("graphile-worker, defaults", "graphile-worker", None),
        ("graphile-worker, localQueue 500", "graphile-worker-localqueue", None),
        ("apalis-postgres 1.0, batch 100", "apalis-postgres", None)]),
]

# Extra fields a result may carry, shown in its row's notes.
NOTES = ["entities", "peak_rss_mib", "rss_mib", "p50_ms", "p99_ms", "queued", "start_secs"]

def main():
    results = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    versions = json.load(open(sys.argv[2]))
    out = ["# Side by side: groundcrew and its peers, one run", ""]
    out.append("Written by `benches/compare/run.sh`; every ratio is to groundcrew "
               "from the same run (these machines are noisy: compare ratios).")
    out.append("")
    for k, v in versions.items():
        out.append(f"- {k}: {v}")
    for title, systems in WORKLOADS:
        rows = []
        for label, key, limit in systems:
            r = next((r for r in results if r["system"] == key
                      and (limit is None or r.get("limit") == limit)), None)
            if r is not None:
                rows.append((label, r))
        if not rows:
            continue
        base = rows[0][1]["per_s"]
        out += ["", f"## {title}", "",
                "| system | tasks | tasks/s | seconds | × groundcrew | notes |",
                "|---|---|---|---|---|---|"]
        for label, r in rows:
            notes = ", ".join(f"{k} {r[k]:.3f}" if k.endswith("_secs") else
                              f"{k} {r[k]:.1f}" if k.endswith("_ms") else f"{k} {r[k]:.0f}"
                              for k in NOTES if k in r)
            out.append(f"| {label} | {r['tasks']} | {r['per_s']:.0f} | {r.get('secs', r.get('seconds', 0)):.2f} "
                       f"| {r['per_s'] / base:.2f}× | {notes} |")
        for label, r in rows:
            if r.get("succeeded") not in (None, r["tasks"]):
                out.append(f"\nWARNING: {label}: {r['succeeded']} of {r['tasks']} succeeded")
    print("\n".join(out))

main()
