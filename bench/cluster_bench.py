#!/usr/bin/env python3
"""Cluster benchmark: blob put and get throughput and latency, and the dedup-query rate, against a fresh
local 6-node 4+2 dev cluster (all nodes and the client on this machine).

Each repetition runs `strata bench blobs` once per blob size, in an order that rotates between repetitions:
it puts COUNT seeded blobs with CONCURRENCY requests in flight, asks the cluster which of them exist in one
batched query (the dedup query a backup makes), reads every blob back and checks it byte for byte, then
deletes them. Printed: medians over the repetitions of MB/s, operations per second, and p50 and p99 latency
per operation; the dedup-query rate in ids per second.

    bench/cluster_bench.py [--repeat 3] [--concurrency 8] [--sizes 4KiB:5000,64KiB:2000,1MiB:300]

Results go to WORK/cluster-results.json (WORK defaults to /var/tmp/strata-cluster-bench).
"""

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

from devcluster import DevCluster, build, log

PORT = int(os.environ.get("STRATA_BENCH_PORT", "7950"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--sizes", default="4KiB:5000,64KiB:2000,1MiB:300", help="SIZE:COUNT pairs")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("WORK", "/var/tmp/strata-cluster-bench")))
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    sizes = [tuple(p.split(":")) for p in a.sizes.split(",")]
    if not a.no_build:
        build()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    cluster = DevCluster(a.work / "cluster", PORT, "cluster-benchmark-password")
    runs = []
    try:
        cluster.start(init=False)
        for trial in range(a.repeat):
            for size, count in sizes[trial % len(sizes):] + sizes[: trial % len(sizes)]:
                out = cluster.strata("--json", "bench", "blobs", "--size", size, "--count", count, "--concurrency", a.concurrency).stdout
                phases = {p["phase"]: p for p in json.loads(out)["phases"]}
                log(f"repetition {trial + 1}/{a.repeat}, {size}: put {phases['put']['mb_per_sec']:.1f} MB/s, get {phases['get']['mb_per_sec']:.1f} MB/s")
                runs.append({"size": size, "count": int(count), "trial": trial, "phases": phases})
    finally:
        cluster.stop()
    (a.work / "cluster-results.json").write_text(json.dumps(runs, indent=1))

    def med(size, phase, key):
        return statistics.median(r["phases"][phase][key] for r in runs if r["size"] == size)

    print(f"Blobs against a local 6-node 4+2 cluster, {a.concurrency} requests in flight, medians of {a.repeat}:\n")
    print("| blob size | put MB/s | put ops/s | put p50 ms | put p99 ms | get MB/s | get ops/s | get p50 ms | get p99 ms | dedup query ids/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, count in sizes:
        has_rate = statistics.median(r["count"] / r["phases"]["has"]["seconds"] for r in runs if r["size"] == size)
        cells = [f"{med(size, 'put', 'mb_per_sec'):.1f}", f"{med(size, 'put', 'ops_per_sec'):.0f}", f"{med(size, 'put', 'p50_ms'):.1f}", f"{med(size, 'put', 'p99_ms'):.1f}"]
        cells += [f"{med(size, 'get', 'mb_per_sec'):.1f}", f"{med(size, 'get', 'ops_per_sec'):.0f}", f"{med(size, 'get', 'p50_ms'):.1f}", f"{med(size, 'get', 'p99_ms'):.1f}"]
        print(f"| {size} ({count} blobs) | " + " | ".join(cells) + f" | {has_rate:.0f} |")


if __name__ == "__main__":
    main()
