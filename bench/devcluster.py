"""A local `strata-node dev` cluster for the benchmark scripts, and process measurements.

Starts six nodes (4+2) on 127.0.0.1, waits until the cluster answers, runs the `strata` client against it
with a password file, reads the nodes' metrics, and finds the node processes so that their CPU time and
memory can be counted next to the client's. Only the standard library is used.
"""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = Path(os.environ.get("STRATA_BIN_DIR", TARGET / "release"))
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build():
    """Builds the release binaries (a no-op when they are fresh)."""
    log(f"building release binaries into {TARGET}")
    r = subprocess.run(["cargo", "build", "--release", "-p", "strata-client", "-p", "strata-node", "--bins"], cwd=ROOT)
    if r.returncode != 0:
        sys.exit("cargo build failed")


class DevCluster:
    def __init__(self, directory: Path, port: int, password: str, nodes: int = 6):
        self.dir, self.port, self.nodes = directory, port, nodes
        directory.mkdir(parents=True, exist_ok=True)
        pw = directory.parent / f"{directory.name}.password"
        pw.write_text(password + "\n")
        self.env = dict(os.environ, STRATA_PROFILE=str(directory / "client.toml"), STRATA_PASSWORD_FILE=str(pw))
        self.dev = None

    def start(self, init=True):
        out = open(self.dir.parent / f"{self.dir.name}.log", "wb")
        self.dev = subprocess.Popen(
            [BIN / "strata-node", "dev", "--dir", self.dir, "--base-port", str(self.port), "--nodes", str(self.nodes), "--log", "warn"],
            stdout=out,
            stderr=out,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.dev.poll() is not None:
                sys.exit(f"strata-node dev exited ({self.dev.returncode}); see {out.name}")
            if (self.dir / "client.toml").exists() and self.strata("admin", "status", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                sys.exit("the dev cluster did not become ready in 120 s")
            time.sleep(0.5)
        if init:
            self.strata("init")

    def strata(self, *args, check=True):
        r = subprocess.run([str(BIN / "strata"), *map(str, args)], env=self.env, capture_output=True, text=True)
        if check and r.returncode != 0:
            sys.exit(f"strata {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return r

    def metric_sum(self, name):
        """The sum over all nodes of a metric (every label set)."""
        total = 0.0
        for i in range(1, self.nodes + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port + 100 + i}/metrics", timeout=10) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(name) and line[len(name)] in " {":
                        total += float(line.split()[-1])
        return total

    def settled_metric_sum(self, name):
        """A gauge's sum once it holds still across a refresh (nodes refresh theirs every 2 s)."""
        last = None
        for _ in range(10):
            total = self.metric_sum(name)
            if total == last:
                return total
            last = total
            time.sleep(2.5)
        return last

    def node_pids(self):
        pids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if len(cmd) > 3 and cmd[1] == b"run" and str(self.dir).encode() in cmd[3]:
                    pids.append(int(p.name))
        return pids

    def stop(self):
        if self.dev:
            self.dev.terminate()
            try:
                self.dev.wait(30)
            except subprocess.TimeoutExpired:
                self.dev.kill()
                self.dev.wait()
            for pid in self.node_pids():
                os.kill(pid, 9)
            self.dev = None


def process_usage(pids):
    """CPU seconds so far, summed over `pids`, the sum of their peak RSS since the last reset_peaks, and the
    sum of their current RSS."""
    cpu, hwm, rss = 0.0, 0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICKS
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1]) * 1024
                elif line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            pass
    return cpu, hwm, rss


def quiesce():
    """Flushes dirty pages and, as root, drops the page cache, so the next step starts cold."""
    os.sync()
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def reset_peaks(pids):
    """Restarts the peak-RSS counters (VmHWM) of `pids`."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5\n")
        except OSError:
            pass


def timed(args, cwd, env, logfile):
    """Runs a command to completion; returns its wall seconds, CPU seconds and peak RSS in bytes (from
    wait4(), so children it waited for count too). Exits on failure."""
    with open(logfile, "ab") as out:
        start = time.monotonic()
        proc = subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({proc.returncode}); see {logfile}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_bytes": usage.ru_maxrss * 1024}
