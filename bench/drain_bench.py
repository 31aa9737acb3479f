#!/usr/bin/env python3
"""Drain benchmark: how fast a storage generation drains, alone and while a backup runs, and how fast that
backup runs, alone and during the drain. Everything runs on this machine: a 6-node 4+2 dev cluster
(generation gen-1), six more nodes joined as gen-b (4+2), and the `strata` client.

Each repetition runs two scenarios on fresh clusters, in alternating order:
  alone       back up NEW_MIB of new data with no drain, then drain gen-1 with nothing else running;
  concurrent  drain gen-1 and back up NEW_MIB of new data at the same time.
The drain rate is shard bytes written by the movers per second (strata_migration_moved_bytes_total summed
over nodes), in steady state: from 5 s after the first bytes moved, for 10 s (alone) or for the backup's
duration (concurrent). The average from the drain's start to Drained is printed too. The move rate
limit is lifted (`strata admin generation rate 0`) so the figures show what the machine allows, unless
`--rate` sets a per-node limit (for example 4MiB) to see how much of the backup's speed a throttle keeps.

Usage: bench/drain_bench.py [--load-mib 1024] [--new-mib 256] [--repeat 3] [--rate 0]
Needs release binaries (built if missing) and python3; prints a table of medians and writes JSON lines of
every run to WORK/results.jsonl.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = Path(os.environ.get("STRATA_BIN_DIR", TARGET / "release"))
WORK = Path(os.environ.get("WORK", "/tmp/strata-drain-bench"))
PORT = int(os.environ.get("STRATA_BENCH_PORT", "7800"))
# Seconds a drain runs before its steady rate is measured (and before the concurrent backup starts).
WARM_UP_S = 5
# Length of the steady-state window of a drain alone.
STEADY_S = 10


def sh(*args, env=None, check=True, capture=True):
    r = subprocess.run([str(a) for a in args], env=env, capture_output=capture, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def make_data(directory: Path, mib: int):
    """Incompressible files of 1-8 MiB, so neither dedup nor compression hides the bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    left, i = mib << 20, 0
    while left > 0:
        size = min(left, (1 + i % 8) << 20)
        (directory / f"f{i:05}.bin").write_bytes(os.urandom(size))
        left -= size
        i += 1


class Cluster:
    def __init__(self, base: Path):
        self.base = base
        self.procs = []
        self.env = dict(os.environ, STRATA_PROFILE=str(base / "client.toml"), STRATA_PASSWORD_FILE=str(WORK / "password"))

    def strata(self, *args, check=True):
        return sh(BIN / "strata", *args, env=self.env, check=check)

    def json(self, *args):
        out = self.strata("--json", *args).stdout.strip()
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            return json.loads(out.splitlines()[-1])

    def start(self):
        log = open(self.base.parent / "dev.log", "w")
        self.procs.append(subprocess.Popen(
            [BIN / "strata-node", "dev", "--dir", self.base, "--base-port", str(PORT), "--partition-bits", "6", "--log", "warn"],
            stdout=log, stderr=log))
        self.wait("the dev cluster", lambda: (self.base / "client.toml").exists() and self.strata("admin", "status", check=False).returncode == 0)

    def wait(self, what, cond, timeout=600):
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return
            time.sleep(0.5)
        sys.exit(f"timed out waiting for {what}")

    def join_gen_b(self, rate: str):
        self.json("admin", "generation", "add", "gen-b", "--ec", "4+2")
        self.json("admin", "generation", "pause", "gen-b")
        for i in range(7, 13):
            token = self.json("admin", "join-token")["join_token"]
            d = self.base / f"node{i}"
            sh(BIN / "strata-node", "join", "--token", token, "--seed", f"127.0.0.1:{PORT + 1}", "--listen", f"127.0.0.1:{PORT + i}",
               "--metrics", f"127.0.0.1:{PORT + 100 + i}", "--zone", f"zone-b{i}", "--capacity", "10GiB", "--generation", "gen-b",
               "--data-dir", d)
            log = open(d / "node.log", "w")
            self.procs.append(subprocess.Popen([BIN / "strata-node", "run", "--config", d / "node.toml"], stdout=log, stderr=log,
                                               env=dict(os.environ, STRATA_LOG="warn")))

        def all_up():
            s = self.json("admin", "status")
            return sum(1 for n in s["nodes"] if n["reachable"]) == 12
        self.wait("12 reachable nodes", all_up)
        self.json("admin", "generation", "rate", rate)

    def moved_bytes(self):
        total = 0.0
        for i in range(1, 13):
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{PORT + 100 + i}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            total += sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("strata_migration_moved_bytes_total"))
        return total

    def gen1_state(self):
        return next(g for g in self.json("admin", "generation", "list")["generations"] if g["generation"]["name"] == "gen-1")

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def timed_backup(c: Cluster, path: Path):
    t0 = time.time()
    c.strata("--json", "backup", path)
    return time.time() - t0


def start_drain(c: Cluster):
    c.json("admin", "generation", "drain", "gen-1")
    c.json("admin", "generation", "resume", "gen-b")


def wait_drained(c: Cluster):
    c.wait("gen-1 to be Drained", lambda: c.gen1_state()["generation"]["state"] == "Drained", timeout=3600)


def scenario(kind: str, load: Path, new: Path, rate: str):
    base = WORK / "cluster"
    shutil.rmtree(base, ignore_errors=True)
    c = Cluster(base)
    try:
        c.start()
        c.strata("init")
        c.strata("--json", "backup", load)
        c.join_gen_b(rate)
        if kind == "alone":
            backup_s = timed_backup(c, new)
            m0, t0 = c.moved_bytes(), time.time()
            start_drain(c)
            # The same steady-state window as the concurrent scenario measures, then the rest of the drain.
            c.wait("the drain to get going", lambda: c.moved_bytes() > m0)
            time.sleep(WARM_UP_S)
            m1, t1 = c.moved_bytes(), time.time()
            time.sleep(STEADY_S)
            steady = (c.moved_bytes() - m1) / (time.time() - t1)
            wait_drained(c)
            drain_s, moved = time.time() - t0, c.moved_bytes() - m0
        else:
            start_drain(c)
            # Measure the steady state, not the movers' start-up: wait until data has been moving for a while.
            c.wait("the drain to get going", lambda: c.moved_bytes() > 0)
            time.sleep(WARM_UP_S)
            m0 = c.moved_bytes()
            backup_s = timed_backup(c, new)
            moved = c.moved_bytes() - m0
            drain_s = backup_s
            steady = moved / backup_s
            still = c.gen1_state()["partitions"]
            wait_drained(c)
            if still["placed"] + still["moving_out"] == 0:
                print("  warning: the drain finished before the backup; raise --load-mib", file=sys.stderr)
        r = {"scenario": kind, "backup_s": backup_s, "backup_mb_s": (new_bytes(new) / 1e6) / backup_s,
             "drain_window_s": drain_s, "moved_bytes": moved, "drain_mb_s": moved / 1e6 / drain_s, "steady_mb_s": steady / 1e6}
        print(f"  {kind:<10} backup {r['backup_mb_s']:6.1f} MB/s ({backup_s:5.1f} s)   drain {r['drain_mb_s']:6.1f} MB/s "
              f"({moved / 1e6:7.1f} MB in {drain_s:5.1f} s), steady {r['steady_mb_s']:6.1f} MB/s", flush=True)
        return r
    finally:
        c.stop()


def new_bytes(path: Path):
    return sum(f.stat().st_size for f in path.iterdir())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load-mib", type=int, default=1024, help="data stored on gen-1 before the drain")
    ap.add_argument("--new-mib", type=int, default=256, help="new data backed up, alone or during the drain")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", default="0", help="per-node move limit during the drains (e.g. 4MiB; 0 = unlimited)")
    a = ap.parse_args()
    if not (BIN / "strata-node").exists() or not (BIN / "strata").exists():
        sh("cargo", "build", "--release", "-p", "strata-node", "-p", "strata-client", capture=False)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "password").write_text("drain benchmark password\n")
    load, new = WORK / "load", WORK / "new"
    for d, mib in ((load, a.load_mib), (new, a.new_mib)):
        shutil.rmtree(d, ignore_errors=True)
        make_data(d, mib)
    results = []
    with open(WORK / "results.jsonl", "a") as out:
        for rep in range(a.repeat):
            order = ["alone", "concurrent"] if rep % 2 == 0 else ["concurrent", "alone"]
            print(f"repetition {rep + 1}/{a.repeat}", flush=True)
            for kind in order:
                r = scenario(kind, load, new, a.rate)
                r["repetition"] = rep
                r["rate"] = a.rate
                out.write(json.dumps(r) + "\n")
                results.append(r)
    # Leave only the results: the clusters and the data take several GB.
    for d in (WORK / "cluster", load, new):
        shutil.rmtree(d, ignore_errors=True)
    med = lambda kind, key: statistics.median(r[key] for r in results if r["scenario"] == kind)
    ba, bc = med("alone", "backup_mb_s"), med("concurrent", "backup_mb_s")
    da, dc, whole = med("alone", "steady_mb_s"), med("concurrent", "steady_mb_s"), med("alone", "drain_mb_s")
    print(f"\nmedians of {a.repeat} ({a.load_mib} MiB on gen-1, {a.new_mib} MiB new, move rate limit {a.rate} per node):")
    print(f"  backup: {ba:.1f} MB/s alone, {bc:.1f} MB/s during a drain ({bc / ba:.0%} of undisturbed)")
    print(f"  drain:  {da:.1f} MB/s alone, {dc:.1f} MB/s during a backup ({dc / da:.0%}), in steady state")
    print(f"  drain:  {whole:.1f} MB/s alone from start to Drained (start-up and the last partitions included)")


if __name__ == "__main__":
    main()
