#!/usr/bin/env python3
"""Memory scaling: how the client's and the nodes' memory grow with what they handle.

Client: backs up trees of N, 10N and 100N small files (each with its own 64 to 1,000 bytes, a hundred to a
directory; N = 2,000 by default) into one fresh dev cluster, then backs each up again unchanged (the
incremental case). Reports the client's peak RSS per backup. The repository key is wrapped with cheap
key-derivation parameters here, because the default Argon2id cost (64 MiB, freed before the backup starts)
would otherwise be the peak of every run.

Nodes: in a second fresh cluster, stores C blobs of 4 KiB (`strata bench blobs --keep`), restarts the cluster
and measures the six node processes' resident memory once it is idle; then adds 9C more (10C in all) and
measures again. Reports the sum of the nodes' RSS after each restart.

    bench/memory_bench.py [--files 2000] [--chunks 20000]

Results go to WORK/memory-results.json (WORK defaults to /var/tmp/strata-memory-bench).
"""

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

from devcluster import BIN, DevCluster, build, log, process_usage, timed

PORT = int(os.environ.get("STRATA_BENCH_PORT", "7980"))


def small_files(root: Path, count: int, seed: int):
    rng = random.Random(seed)
    for i in range(count):
        d = root / f"d{i // 100:05}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        (d / f"f{i:07}.txt").write_bytes(rng.randbytes(rng.randint(64, 1000)))


def idle_rss(cluster):
    """The nodes' summed RSS once it stops changing by more than 1% over 3 s."""
    last = None
    for _ in range(20):
        _, _, rss = process_usage(cluster.node_pids())
        if last and abs(rss - last) < 0.01 * last:
            return rss
        last = rss
        time.sleep(3)
    return last


def client_scaling(work: Path, base: int):
    cluster = DevCluster(work / "client-cluster", PORT, "memory-benchmark-password")
    # Release binaries always unlock the key with the real Argon2id parameters (64 MiB), so every client run has
    # a floor of about 75 MB of peak memory; what matters here is how the rest grows with the number of files.
    out = []
    try:
        cluster.start()
        for factor in [1, 10, 100]:
            n = base * factor
            tree = work / f"files-{n}"
            log(f"creating {n} files")
            small_files(tree, n, factor)
            row = {"files": n}
            for label in ["first", "unchanged"]:
                fig = timed([BIN / "strata", "backup", "--json", tree], work, cluster.env, work / "client.log")
                row[label] = fig
                log(f"{n} files, {label} backup: {fig['wall_s']:.1f} s, peak RSS {fig['rss_bytes'] / 1e6:.0f} MB")
            shutil.rmtree(tree)
            out.append(row)
    finally:
        cluster.stop()
    return out


def node_scaling(work: Path, chunks: int):
    cluster = DevCluster(work / "node-cluster", PORT + 40, "memory-benchmark-password")
    out = []
    try:
        cluster.start(init=False)
        stored = 0
        for target in [chunks, 10 * chunks]:
            batch = 10_000
            while stored < target:
                n = min(batch, target - stored)
                cluster.strata("bench", "blobs", "--keep", "--size", "4KiB", "--count", n, "--concurrency", 16)
                stored += n
            cluster.stop()
            cluster.start(init=False)
            rss = idle_rss(cluster)
            shards = cluster.settled_metric_sum("strata_shards_stored")
            log(f"{stored} blobs ({shards:.0f} shards): nodes' RSS after a restart {rss / 1e6:.0f} MB")
            out.append({"blobs": stored, "shards": shards, "node_rss_bytes": rss})
    finally:
        cluster.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000, help="N: the smallest tree has N files, the largest 100N")
    ap.add_argument("--chunks", type=int, default=20000, help="C: blobs stored before the first node measurement")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("WORK", "/var/tmp/strata-memory-bench")))
    ap.add_argument("--only", choices=["client", "nodes"], help="run one half")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        build()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    client = client_scaling(a.work, a.files) if a.only != "nodes" else []
    nodes = node_scaling(a.work, a.chunks) if a.only != "client" else []
    (a.work / "memory-results.json").write_text(json.dumps({"client": client, "nodes": nodes}, indent=1))

    if client:
        print("| files backed up | first backup: wall s | peak RSS MB | unchanged again: wall s | peak RSS MB |")
        print("|---|---|---|---|---|")
        for r in client:
            f, u = r["first"], r["unchanged"]
            print(f"| {r['files']} | {f['wall_s']:.1f} | {f['rss_bytes'] / 1e6:.0f} | {u['wall_s']:.1f} | {u['rss_bytes'] / 1e6:.0f} |")
        print()
    if nodes:
        print("| blobs stored (4 KiB) | shards | six nodes' RSS after a restart, MB |")
        print("|---|---|---|")
        for r in nodes:
            print(f"| {r['blobs']} | {r['shards']:.0f} | {r['node_rss_bytes'] / 1e6:.0f} |")


if __name__ == "__main__":
    main()
