#!/usr/bin/env python3
"""Restore speed of client variants side by side, against one cluster and one snapshot.

Generates the synthetic home directory (homedir.py) at --scale, starts a 6-node 4+2 `strata-node dev`
cluster, backs the tree up once, then restores that snapshot with every variant in every repetition (the
order rotates between repetitions, since machines are noisy), each into an empty directory after a sync and
(as root) a dropped page cache. Every restore is verified against the tree's manifest. Reported per variant:
median wall seconds, client CPU seconds, node CPU seconds and client peak RSS, and the wall time as a ratio
to the first variant.

A variant is LABEL=ARGS (extra `strata restore` arguments) or LABEL@DIR=ARGS (the `strata` binary in DIR,
for example a build of an earlier commit):

    bench/restore_bench.py                                   scale 0.2, 3 repetitions, --concurrency 8 vs the default
    bench/restore_bench.py --variant 'before@/tmp/old=' --variant 'after='
    STRATA_BIN_DIR=$CARGO_TARGET_DIR/debug bench/restore_bench.py --scale 0.1

Binaries come from STRATA_BIN_DIR (default: the release directory of CARGO_TARGET_DIR, built with cargo when
missing). Results go to WORK/results.json (WORK defaults to /var/tmp/strata-restore-bench). Exit status 1 if any
restore did not verify.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from devcluster import BIN, DevCluster, build, log, process_usage, quiesce, timed

HOMEDIR = Path(__file__).resolve().parent / "homedir.py"
PASSWORD = "restore-benchmark-password"
PORT = int(os.environ.get("STRATA_BENCH_PORT", "7950"))


def parse_variant(spec):
    label, _, args = spec.partition("=")
    label, _, bindir = label.partition("@")
    if not label:
        sys.exit(f"variant {spec!r}: expected LABEL=ARGS or LABEL@DIR=ARGS")
    binary = Path(bindir) / "strata" if bindir else BIN / "strata"
    if not binary.exists():
        sys.exit(f"variant {label}: {binary} does not exist")
    return {"label": label, "binary": binary, "args": shlex.split(args)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variant", action="append", help="LABEL=ARGS or LABEL@DIR=ARGS (repeatable)")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/strata-restore-bench"))
    a = ap.parse_args()
    if a.repeat < 1 or a.scale <= 0:
        sys.exit("--repeat must be at least 1 and --scale positive")
    if not (BIN / "strata-node").exists():
        build()
    variants = [parse_variant(v) for v in (a.variant or ["concurrency-8=--concurrency 8", "default="])]

    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    src, manifest, logfile = a.work / "src", a.work / "manifest.json", a.work / "bench.log"
    log(f"generating the tree at scale {a.scale}")
    subprocess.run([sys.executable, HOMEDIR, "gen", src, "--scale", str(a.scale)], check=True)
    subprocess.run([sys.executable, HOMEDIR, "manifest", src, manifest], check=True)
    cluster = DevCluster(a.work / "cluster", PORT, PASSWORD)
    results = {v["label"]: [] for v in variants}
    failed = False
    try:
        cluster.start()
        log("backing up")
        timed([BIN / "strata", "backup", "src"], a.work, cluster.env, logfile)
        for rep in range(a.repeat):
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]
            for v in order:
                target = a.work / "restore"
                shutil.rmtree(target, ignore_errors=True)
                quiesce()
                nodes = cluster.node_pids()
                node_cpu0 = process_usage(nodes)[0]
                m = timed([v["binary"], "restore", "latest", "--target", target, *v["args"]], None, cluster.env, logfile)
                m["node_cpu_s"] = process_usage(nodes)[0] - node_cpu0
                ok = subprocess.run([sys.executable, HOMEDIR, "verify", target / str(src.resolve()).lstrip("/"), manifest]).returncode == 0
                failed |= not ok
                m["verified"] = ok
                results[v["label"]].append(m)
                log(f"rep {rep + 1} {v['label']}: {m['wall_s']:.2f} s wall, verified={ok}")
    finally:
        cluster.stop()

    base = statistics.median(r["wall_s"] for r in results[variants[0]["label"]])
    print(f"restore of {a.scale} scale, median of {a.repeat}")
    print(f"{'variant':<24} {'wall s':>8} {'ratio':>6} {'client cpu s':>13} {'node cpu s':>11} {'client rss MiB':>15}")
    for v in variants:
        rs = results[v["label"]]
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        print(
            f"{v['label']:<24} {med('wall_s'):>8.2f} {med('wall_s') / base:>6.2f} {med('cpu_s'):>13.2f} "
            f"{med('node_cpu_s'):>11.2f} {med('rss_bytes') / 2**20:>15.0f}"
        )
    (a.work / "results.json").write_text(json.dumps({k: v for k, v in results.items()}, indent=1, default=str))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
