#!/usr/bin/env python3
"""Prints the stage benchmarks (`cargo bench -p strata-bench --bench stages`) as one table.

For every stage: the median throughput of Strata's code path and of the library alone, and the first as a
fraction of the second; then the client pipeline (chunk, id, compress, encrypt, one core) as a fraction of
its slowest stage and of the rate those stages would reach one after another (1 / sum of 1/rate).

    bench/stage_table.py [CRITERION_DIR]     default: $CARGO_TARGET_DIR/criterion or target/criterion
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "criterion"
PIPELINE_STAGES = ["chunking", "chunk_id", "zstd", "aead"]


def load(directory: Path):
    rates = {}
    for bench in directory.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        throughput = (meta.get("throughput") or {}).get("Bytes")
        if throughput:
            seconds = estimates["median"]["point_estimate"] / 1e9
            rates[(meta["group_id"], meta["function_id"])] = throughput / seconds
    return rates


def main():
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    rates = load(directory)
    if not rates:
        sys.exit(f"no criterion results under {directory}; run `cargo bench -p strata-bench --bench stages` first")
    groups = sorted({g for g, _ in rates if g != "pipeline"}, key=lambda g: (g not in PIPELINE_STAGES, PIPELINE_STAGES.index(g) if g in PIPELINE_STAGES else 0, g))
    print("| stage (one core) | Strata MB/s | library alone MB/s | Strata / library |")
    print("|---|---|---|---|")
    for g in groups:
        s, lib = rates.get((g, "strata")), rates.get((g, "library"))
        ratio = f"{s / lib:.2f}" if s and lib else ""
        print(f"| {g} | {s / 1e6:.0f} | {lib / 1e6:.0f} | {ratio} |" if s and lib else f"| {g} | {s or ''} | {lib or ''} | |")
    pipe = rates.get(("pipeline", "strata"))
    stage_rates = {g: rates[(g, "strata")] for g in PIPELINE_STAGES if (g, "strata") in rates}
    if pipe and len(stage_rates) == len(PIPELINE_STAGES):
        slowest = min(stage_rates, key=stage_rates.get)
        serial = 1 / sum(1 / r for r in stage_rates.values())
        print()
        print(
            f"Client pipeline (chunk + id + zstd + AEAD on mixed data, one core): {pipe / 1e6:.0f} MB/s = "
            f"{pipe / stage_rates[slowest]:.2f} of its slowest stage ({slowest}, {stage_rates[slowest] / 1e6:.0f} MB/s) "
            f"and {pipe / serial:.2f} of the stages run back to back ({serial / 1e6:.0f} MB/s)."
        )


if __name__ == "__main__":
    main()
