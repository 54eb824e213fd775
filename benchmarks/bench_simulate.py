"""Benchmark: thickness series from one exit-plane pass vs a separate run per thickness.

Both cases compute the same ADF signal for the 15 thicknesses 2, 4, ..., 30 uc of CsPbBr3
[001] (identical to float precision, tests/simulation/test_series.py); the exit-plane case propagates
once through the 30 uc slab, the separate case propagates through 2 + 4 + ... + 30 = 240 uc.
Every case runs in a fresh process; wall time is measured around the simulation only and the
peak memory is the growth of the process's peak resident set over its post-import baseline.
Medians over ``--repeats``.

    nice -n 10 .venv/bin/python benchmarks/bench_simulate.py --repeats 3

The quick grid (sampling factor 1, 540²) is used; the default ``--scan-per-cell 8`` (15 probe positions) keeps the benchmark short; the cost of
both cases is linear in the number of positions, so the speed-up does not depend on it (use
``--scan-per-cell 22`` for the production scan).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time


def _case(exit_planes, scan_per_cell, configs, queue):
    from stemqd import simulation as sim

    params = sim.SeriesParameters(scan_per_cell=scan_per_cell, sampling_factor=1.0)
    sim.simulate_scans(params, [0], seed=0, thicknesses_uc=(2,))  # warm-up: imports, plans
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = sim.simulate_scans(params, list(range(configs)), seed=0, exit_planes=exit_planes)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "wall_s": wall,
            "peak_mib": (peak - base) / 1024.0,
            "peak_rss_mib": peak / 1024.0,
            "shape": list(out.shape),
            "gpts": params.grid_points,
            "positions": out.shape[-1],
        }
    )


def run_case(exit_planes, scan_per_cell, configs):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(exit_planes, scan_per_cell, configs, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scan-per-cell", type=int, default=8)
    ap.add_argument(
        "--configs",
        type=int,
        default=2,
        help="frozen-phonon configurations per case (one per focal node)",
    )
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    rows = {}
    for name, exit_planes in (("exit planes (1 pass)", True), ("separate (15 runs)", False)):
        runs = [
            run_case(exit_planes, args.scan_per_cell, args.configs) for _ in range(args.repeats)
        ]
        rows[name] = {
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "peak_mib": statistics.median(r["peak_mib"] for r in runs),
            "walls": [r["wall_s"] for r in runs],
            "gpts": runs[0]["gpts"],
            "positions": runs[0]["positions"],
        }
    ep, sep = rows["exit planes (1 pass)"], rows["separate (15 runs)"]
    speedup = sep["wall_s"] / ep["wall_s"]
    print(
        f"CsPbBr3 [001], 2-30 uc (15 thicknesses), grid {ep['gpts']}^2, "
        f"{ep['positions']} probe positions, {args.configs} configurations, "
        f"median of {args.repeats}, {os.cpu_count()} cores"
    )
    print(f"{'case':<24}{'wall (s)':>10}{'peak mem (MiB)':>16}")
    for name, r in rows.items():
        print(f"{name:<24}{r['wall_s']:>10.2f}{r['peak_mib']:>16.0f}")
    print(
        f"{'ratio separate/single':<24}{speedup:>10.2f}"
        f"{sep['peak_mib'] / max(ep['peak_mib'], 1e-9):>16.2f}"
    )
    print(f"target >= 5x: {'met' if speedup >= 5 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "rows": rows,
                    "speedup": speedup,
                    "args": vars(args),
                    "host": platform.platform(),
                    "cpu_count": os.cpu_count(),
                },
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
