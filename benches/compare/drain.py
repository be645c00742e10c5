"""Drains N no-op `test` tasks on groundcrew nodes sharing one PostgreSQL:
batches of `POST /api/v1/tasks` round-robin over the nodes, timed from the
first submit until no task is queued or running (counted in the database).
Prints one JSON line."""
import json, urllib.error, subprocess, sys, time, urllib.request

def main():
    n, batch, psql, nodes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    nodes = [nd.split(",", 1) for nd in nodes]  # base,token
    left_sql = ("SELECT count(*) FROM groundcrew.tasks "
                "WHERE state IN ('queued','running','canceling')")
    t0 = time.monotonic()
    for k, i in enumerate(range(0, n, batch)):
        base, token = nodes[k % len(nodes)]
        body = [{"kind": "test", "target": f"asn:{j}", "params": {"times": 1, "round_ms": 0}}
                for j in range(i, min(n, i + batch))]
        req = urllib.request.Request(base + "/api/v1/tasks", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
        try:
            with urllib.request.urlopen(req) as r:
                assert r.status == 202, r.status
        except urllib.error.HTTPError as e:
            sys.exit(f"submit refused: {e.code} {e.read().decode()}")
    submitted = time.monotonic() - t0
    while True:
        out = subprocess.run(psql + " -c \"" + left_sql + "\"", shell=True,
                             capture_output=True, text=True, check=True).stdout.strip()
        if out == "0":
            break
        time.sleep(0.02)
    s = time.monotonic() - t0
    done = subprocess.run(psql + " -c \"SELECT count(*) FROM groundcrew.tasks WHERE state='succeeded'\"",
                          shell=True, capture_output=True, text=True, check=True).stdout.strip()
    print(json.dumps({"tasks": n, "succeeded": int(done), "seconds": s,
                      "submit_seconds": submitted, "per_s": n / s}))

main()
