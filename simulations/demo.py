"""The stemqd demo (``make demo``): core-only versus core/shell dots, end to end.

Runs, exactly as a user would type them::

    stemqd process sample_data/core       --out OUT/core       --jobs 2 --set reference_series=SERIES
    stemqd process sample_data/core-shell --out OUT/core-shell --jobs 2 --set reference_series=SERIES
    stemqd compare core=OUT/core core-shell=OUT/core-shell --out OUT/compare
    stemqd report OUT/core ; stemqd report OUT/core-shell ; stemqd report OUT/compare

with SERIES the committed multislice reference
(``simulations/reference/cspbbr3_001_adf_series_round.csv``, measured with the default column
model, so that every dot's ratio is also read
as a thickness), and prints where the reports are. ``sample_data/`` is made first if it is missing
(``simulations/make_sample_data.py``). A second run reuses the processed stacks
(``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> str:
    """Run ``stemqd ARGS`` (through the checkout's cli.py) and return its stdout."""
    print(f"$ stemqd {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    if result.stdout.strip():
        print(result.stdout.rstrip(), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: 'stemqd {args[0]}' failed with exit code {result.returncode}")
    return result.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="stemqd demo: core vs core/shell dots")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--data", default=str(ROOT / "sample_data"), help="sample data folder")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--force", action="store_true", help="reprocess all stacks")
    args = parser.parse_args(argv)
    out, data = Path(args.out), Path(args.data)
    t0 = time.perf_counter()
    if not (data / "core").is_dir() or not (data / "core-shell").is_dir():
        print(f"making the sample data in {data}", flush=True)
        subprocess.run(
            [sys.executable, str(ROOT / "simulations" / "make_sample_data.py"), "--out", str(data)],
            check=True,
        )
    extra = ["--force"] if args.force else []
    series = Path("simulations") / "reference" / "cspbbr3_001_adf_series_round.csv"
    if (ROOT / series).is_file():
        extra += ["--set", f"reference_series={series}"]
    for group in ("core", "core-shell"):
        run(
            [
                "process",
                str(data / group),
                "--out",
                str(out / group),
                "--jobs",
                str(args.jobs),
                *extra,
            ]
        )
    run(
        [
            "compare",
            f"core={out / 'core'}",
            f"core-shell={out / 'core-shell'}",
            "--out",
            str(out / "compare"),
        ]
    )
    reports = [
        run(["report", str(out / name)]).strip() for name in ("core", "core-shell", "compare")
    ]
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s")
    print(f"per-stack reports: {reports[0]}\n                   {reports[1]}")
    print(f"report: {reports[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
