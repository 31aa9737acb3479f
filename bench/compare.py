#!/usr/bin/env python3
"""Strata side by side with restic and borg on the same synthetic home directory.

For every repetition and every tool (in an order that rotates between repetitions): copy the day-1 tree,
create an empty repository (for Strata: a fresh 6-node 4+2 `strata-node dev` cluster on this machine),
back it up (day 1), apply the day-2 changes, back it up again (day 2), restore the day-2 snapshot into an
empty directory and compare it with the day-2 manifest (names, kinds, contents, modes, file mtimes, symlink
targets). Before each timed step everything is synced and, when running as root, the page cache is dropped,
so every tool reads its source cold.

Reported per step: wall seconds, CPU seconds and peak RSS of the client, and for Strata the CPU and the sum
of the per-node peak RSS of the six node processes during the step. Reported per run: bytes stored (restic
and borg: their repository; Strata: the shard bytes on all nodes, which include the 1.5x erasure-code
redundancy that survives two lost nodes, and one copy's worth, 4/6 of that), bytes added by day 2 next to
the bytes the mutation really wrote, and disk used (Strata: the nodes' whole data directories, RocksDB's
write-ahead logs and node logs included). The table gives medians and Strata's figures as ratios to
restic's and borg's.

    bench/compare.py                      scale 1 (about 2.2 GiB), 3 repetitions
    bench/compare.py --small              scale 0.02, 1 repetition (what CI runs)
    bench/compare.py --scale 0.5 --repeat 5 --tools strata,restic

restic and borg are installed with apt-get when missing (as root); Strata's release binaries are built
with cargo (set CARGO_TARGET_DIR if your build directory is elsewhere). Results go to WORK/results.json and
WORK/results.md (WORK defaults to /var/tmp/strata-compare). Exit status 1 if any restore did not verify.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from devcluster import BIN, DevCluster, build, log, process_usage, quiesce, reset_peaks, timed

HOMEDIR = Path(__file__).resolve().parent / "homedir.py"
PASSWORD = "compare-benchmark-password"
PORT = int(os.environ.get("STRATA_BENCH_PORT", "7900"))


def sh(*args, cwd=None, env=None):
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def du(*paths):
    total = 0
    for p in paths:
        for d, _, files in os.walk(p):
            for f in files:
                try:
                    total += os.lstat(os.path.join(d, f)).st_blocks * 512
                except FileNotFoundError:
                    pass
    return total


# --------------------------------------------------------------------------------------------- the tools
class Tool:
    name = ""

    def __init__(self, run_dir: Path):
        self.run = run_dir
        self.env = dict(os.environ)

    def version(self):
        return ""

    def init(self):
        pass

    def backup(self, label):
        """The command that backs up `home` (run with cwd = the run directory)."""
        raise NotImplementedError

    def restore(self, dest):
        raise NotImplementedError

    def stored(self):
        """Bytes the repository holds (restic and borg: their repository directory)."""
        return du(self.run / "repo")

    def disk(self):
        """Disk space the repository takes."""
        return self.stored()

    def servers(self):
        """Process ids of server processes whose CPU and memory count too."""
        return []

    def stop(self):
        pass


class Restic(Tool):
    name = "restic"

    def __init__(self, run_dir):
        super().__init__(run_dir)
        self.env.update(RESTIC_REPOSITORY=str(run_dir / "repo"), RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(run_dir / "cache"))

    def version(self):
        return sh("restic", "version", env=self.env).strip()

    def init(self):
        sh("restic", "init", "--repository-version", "2", env=self.env)

    def backup(self, label):
        return ["restic", "backup", "--quiet", "--tag", label, "home"]

    def restore(self, dest):
        return ["restic", "restore", "latest", "--target", dest]


class Borg(Tool):
    name = "borg"

    def __init__(self, run_dir):
        super().__init__(run_dir)
        self.env.update(BORG_REPO=str(run_dir / "repo"), BORG_PASSPHRASE=PASSWORD, BORG_BASE_DIR=str(run_dir / "borg-base"))

    def version(self):
        return sh("borg", "--version", env=self.env).strip()

    def init(self):
        sh("borg", "init", "--encryption=repokey-blake2", env=self.env)

    def backup(self, label):
        # zstd level 3, the level Strata uses (borg's default is lz4).
        return ["borg", "create", "--compression", "zstd,3", f"::{label}", "home"]

    def restore(self, dest):
        return ["sh", "-c", f"cd '{dest}' && exec borg extract ::day2"]


class Strata(Tool):
    name = "strata"

    def __init__(self, run_dir):
        super().__init__(run_dir)
        self.cluster = DevCluster(run_dir / "cluster", PORT, PASSWORD)
        self.env = self.cluster.env

    def version(self):
        return sh(BIN / "strata", "--version").strip()

    def init(self):
        self.cluster.start()

    def backup(self, label):
        return [BIN / "strata", "backup", "--json", "--tag", label, "home"]

    def restore(self, dest):
        return [BIN / "strata", "restore", "--json", "latest", "--target", dest]

    def stored(self):
        """Shard bytes on all six nodes."""
        return int(self.cluster.settled_metric_sum("strata_shard_data_bytes"))

    def disk(self):
        return du(*sorted(self.cluster.dir.glob("node*")))

    def servers(self):
        return self.cluster.node_pids()

    def stop(self):
        self.cluster.stop()


TOOLS = {"strata": Strata, "restic": Restic, "borg": Borg}


def step(tool, args, cwd, logfile):
    quiesce()
    servers = tool.servers()
    reset_peaks(servers)
    cpu0, _, _ = process_usage(servers)
    fig = timed(args, cwd, tool.env, logfile)
    cpu1, hwm, _ = process_usage(servers)
    if servers:
        fig["server_cpu_s"] = cpu1 - cpu0
        fig["server_rss_bytes"] = hwm
    return fig


def find_home(dest: Path):
    """The restored `home` directory: tools recreate the backed-up path (relative or absolute) below dest."""
    for d, dirs, _ in os.walk(dest):
        if "home" in dirs and (Path(d) / "home" / "Documents").is_dir():
            return Path(d) / "home"
    return None


def one_run(name, data, work, trial):
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    sh("cp", "-a", data["day1"], run / "home")
    tool = TOOLS[name](run)
    logfile = run / "tool.log"
    result = {"tool": name, "trial": trial}
    try:
        tool.init()
        result["day1"] = step(tool, tool.backup("day1"), run, logfile)
        result["stored_day1_bytes"] = tool.stored()
        sh(sys.executable, HOMEDIR, "mutate", run / "home", "--seed", str(data["seed"]))
        result["day2"] = step(tool, tool.backup("day2"), run, logfile)
        result["stored_bytes"] = tool.stored()
        result["disk_bytes"] = tool.disk()
        dest = run / "restore"
        dest.mkdir()
        result["restore"] = step(tool, tool.restore(dest), dest, logfile)
        home = find_home(dest)
        verify = subprocess.run([sys.executable, HOMEDIR, "verify", home or dest, data["manifest"]], capture_output=True, text=True)
        result["verified"] = home is not None and verify.returncode == 0
        if not result["verified"]:
            kept = work / f"failed-{name}-{trial}.log"
            kept.write_text(logfile.read_text(errors="replace") + "\n--- verify\n" + verify.stdout)
            log(f"{name}: the restored tree does not match the day-2 manifest; see {kept}")
    finally:
        tool.stop()
    shutil.rmtree(run, ignore_errors=True)
    return result


def prepare_data(work, scale, seed):
    # A change to the generator makes a new dataset.
    version = hashlib.sha256(HOMEDIR.read_bytes()).hexdigest()[:8]
    data_dir = work / f"data-s{scale}-seed{seed}-{version}"
    day1 = data_dir / "day1"
    done = data_dir / "ready.json"
    if not done.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        log(f"generating the dataset (scale {scale}, seed {seed}) in {day1}")
        gen = json.loads(sh(sys.executable, HOMEDIR, "gen", day1, "--scale", str(scale), "--seed", str(seed)))
        scratch = data_dir / "day2"
        sh("cp", "-a", day1, scratch)
        changed = json.loads(sh(sys.executable, HOMEDIR, "mutate", scratch, "--seed", str(seed)))
        sh(sys.executable, HOMEDIR, "manifest", scratch, data_dir / "day2.json")
        shutil.rmtree(scratch)
        done.write_text(json.dumps({"gen": gen, "changed": changed, "bytes": du(day1)}))
    info = json.loads(done.read_text())
    return {"day1": day1, "manifest": data_dir / "day2.json", "seed": seed, **info}


def ensure_peers(names):
    missing = [n for n in names if n != "strata" and shutil.which(n) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"{', '.join(missing)} not installed; install them (Debian: apt-get install restic borgbackup) or run as root")
    packages = {"restic": "restic", "borg": "borgbackup"}
    log(f"installing {', '.join(missing)} with apt-get")
    subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
    sh("apt-get", "install", "-y", "-q", *[packages[n] for n in missing], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def median(runs, key, sub=None):
    vals = [r[key][sub] if sub else r[key] for r in runs if key in r and (sub is None or sub in r[key])]
    return statistics.median(vals) if vals else None


def summarize(results, tools, data):
    """Markdown table of medians, with Strata's figures as ratios to each peer's."""
    mb = 1e6
    rows = []
    for step_name in ["day1", "day2", "restore"]:
        rows.append((f"{step_name}: wall s", step_name, "wall_s", 1, "{:.1f}"))
        rows.append((f"{step_name}: client CPU s", step_name, "cpu_s", 1, "{:.1f}"))
        rows.append((f"{step_name}: client peak RSS MB", step_name, "rss_bytes", mb, "{:.0f}"))
        rows.append((f"{step_name}: node CPU s (6 nodes)", step_name, "server_cpu_s", 1, "{:.1f}"))
        rows.append((f"{step_name}: node peak RSS MB (sum of 6)", step_name, "server_rss_bytes", mb, "{:.0f}"))
    rows.append(("stored after day 2, MB (Strata: shards, 1.5 copies)", "stored_bytes", None, mb, "{:.0f}"))
    rows.append(("stored after day 2, one copy, MB", "copy_bytes", None, mb, "{:.0f}"))
    rows.append(("added by day 2, one copy, MB", "added_bytes", None, mb, "{:.1f}"))
    rows.append(("disk used after day 2, MB", "disk_bytes", None, mb, "{:.0f}"))
    by_tool = {t: [r for r in results if r["tool"] == t] for t in tools}
    for rs in by_tool.values():
        for r in rs:
            # Strata's shards carry k+m = 6 pieces of every 4: one copy is 4/6 of them.
            copy = (4 / 6) if r["tool"] == "strata" else 1
            r["copy_bytes"] = r["stored_bytes"] * copy
            r["added_bytes"] = (r["stored_bytes"] - r["stored_day1_bytes"]) * copy
    peers = [t for t in tools if t != "strata"]
    head = "| | " + " | ".join(tools) + "".join(f" | strata / {p}" for p in peers) + " |"
    lines = [head, "|---" * (1 + len(tools) + (len(peers) if "strata" in tools else 0)) + "|"]
    for label, key, sub, unit, fmt in rows:
        meds = {t: median(by_tool[t], key, sub) for t in tools}
        if all(v is None for v in meds.values()):
            continue
        cells = [fmt.format(meds[t] / unit) if meds[t] is not None else "" for t in tools]
        if "strata" in tools:
            for p in peers:
                s, o = meds["strata"], meds[p]
                cells.append(f"{s / o:.2f}" if s is not None and o else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    changed = data["changed"]["new_bytes"]
    verified = {t: sum(1 for r in by_tool[t] if r.get("verified")) for t in tools}
    lines.append("")
    lines.append(
        f"Dataset: {data['bytes'] / 1e9:.2f} GB on disk, {data['gen']['files']} files; the day-2 mutation wrote "
        f"{changed / 1e6:.1f} MB of new bytes ({data['changed']})."
    )
    lines.append(f"Medians of {max(len(v) for v in by_tool.values())} runs per tool; restores verified: {verified}.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="dataset scale (1 = about 2.2 GiB)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tools", default="strata,restic,borg")
    ap.add_argument("--small", action="store_true", help="scale 0.02 and one repetition (CI)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("WORK", "/var/tmp/strata-compare")))
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    a = ap.parse_args()
    if a.small:
        a.scale, a.repeat = 0.02, 1
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools:
        sys.exit(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    ensure_peers(tools)
    if "strata" in tools and not a.no_build:
        build()
    a.work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(a.work, a.scale, a.seed)
    versions = {t: TOOLS[t](a.work).version() for t in tools}
    log(f"dataset {data['bytes'] / 1e9:.2f} GB; tools: {versions}")
    results = []
    for trial in range(a.repeat):
        order = tools[trial % len(tools):] + tools[: trial % len(tools)]
        for name in order:
            log(f"repetition {trial + 1}/{a.repeat}: {name}")
            r = one_run(name, data, a.work, trial)
            log(f"  {name}: " + ", ".join(f"{s} {r[s]['wall_s']:.1f} s" for s in ["day1", "day2", "restore"] if s in r) + f", verified: {r.get('verified')}")
            results.append(r)
    table = summarize(results, tools, data)
    machine = f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    (a.work / "results.json").write_text(json.dumps({"versions": versions, "machine": machine, "scale": a.scale, "data": data, "runs": results}, default=str, indent=1))
    (a.work / "results.md").write_text(table + "\n")
    print(f"Tools: {versions}\nMachine: {machine}\n")
    print(table)
    if not all(r.get("verified") for r in results):
        sys.exit("some restores did not match the day-2 tree")


if __name__ == "__main__":
    main()
