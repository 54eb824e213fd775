"""Run the tiny real CP2K job behind ``tests/aimd/fixtures/cp2k/`` (CI never runs this).

A 5-atom CsPbBr3 cluster (one Pb, its three +x/+y/+z Br and the body-centre Cs of one cubic
unit cell, a = 5.87 Å) in a 10 Å non-periodic box, PBE/GTH/DZVP-MOLOPT-SR, 150 Ry cutoff
(the study uses 300 Ry; a lower cutoff keeps this at a few seconds per step on 2 cores), NVT
CSVR at 300 K with 10 fs steps and a 15 fs time constant, 20 MD steps, two runs:

* ``diag``: diagonalisation with ADDED_MOS, HOMO/LUMO printed in both the ``MO|`` style
  (after every SCF step) and the ``MO_CUBES`` style (lower-case "Lowest eigenvalues", no gap
  line);
* ``ot``: OT, ``MO_CUBES`` style only (``HOMO - LUMO gap [eV]`` line every step).

Positions, velocities, ``.ener`` and the ``.out`` log (gzipped) of each run are copied to
``tests/aimd/fixtures/cp2k/{diag,ot}/``; wavefunction and restart files are not kept.

Exact command (from the repository root, Debian's ``apt-get install cp2k``)::

    nice -n 10 .venv/bin/python simulations/cp2k/make_fixture.py --workdir /tmp/stemqd_cp2k_fixture

``--inputs-only`` writes the inputs without running CP2K; ``--collect-only`` copies the
outputs of an earlier run into the fixture.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ase import Atoms

from stemqd.aimd.cp2k import write_cp2k_inputs
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "aimd" / "fixtures" / "cp2k"
PROJECT = "cspbbr3"


def cluster():
    """The 5-atom CsPbBr3 fragment of one cubic unit cell, centred in a 10 Å box."""
    h = CSPBBR3_LATTICE_CONSTANT_A / 2.0
    atoms = Atoms(
        "PbBr3Cs",
        positions=[(0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h), (h, h, h)],
        cell=[10.0] * 3,
    )
    atoms.positions += 5.0 - atoms.positions.mean(axis=0)
    atoms.info["charge"] = 0  # Cs+ Pb2+ 3 Br-: neutral, 34 valence electrons, closed shell
    return atoms


RUNS = {
    "diag": dict(solver="DIAG", mo_print=("MO", "MO_CUBES")),
    "ot": dict(solver="OT", mo_print=("MO_CUBES",)),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/stemqd_cp2k_fixture")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=1500.0,
        help="kill a run that takes longer than this (s)",
    )
    parser.add_argument("--inputs-only", action="store_true")
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="copy the outputs of an earlier run in --workdir into the fixture",
    )
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "CP2K_DATA_DIR": os.environ.get("CP2K_DATA_DIR", "/usr/share/cp2k"),
        "OMP_NUM_THREADS": "1",
    }
    cp2k = shutil.which(os.environ.get("CP2K", "cp2k"))
    for name, options in RUNS.items():
        folder = Path(args.workdir) / name
        stage = dict(
            name="md",
            run_type="MD",
            steps=args.steps,
            temperature_K=300.0,
            timestep_fs=10.0,
            timecon_fs=15.0,
        )
        write_cp2k_inputs(
            cluster(),
            folder,
            stages=[stage],
            project=PROJECT,
            cutoff_Ry=150.0,
            rel_cutoff_Ry=30.0,
            seed=20260101,
            **options,
        )
        if args.inputs_only:
            continue
        if not args.collect_only:
            if cp2k is None:
                sys.exit("cp2k not found; apt-get install cp2k")
            t0 = time.monotonic()
            with open(folder / "md.out", "w") as log:
                proc = subprocess.run(
                    [cp2k, "-i", "md.inp"],
                    cwd=folder,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=args.time_budget_s,
                )
            elapsed = time.monotonic() - t0
            print(f"{name}: cp2k exit {proc.returncode}, {elapsed:.1f} s for {args.steps} MD steps")
            if proc.returncode:
                sys.exit(f"{name}: CP2K failed; see {folder / 'md.out'}")
            (folder / "RUNTIME.txt").write_text(
                f"{elapsed:.1f} s wall for {args.steps} MD steps, {os.cpu_count()} cores, "
                "OMP_NUM_THREADS=1, Debian cp2k 2023.1\n"
            )
        collect(folder, FIXTURE / name)


def collect(folder, dest):
    """Copy a run's outputs into the fixture; the .out log is gzipped (the readers read .gz)."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in [
        "md.inp",
        "dot.xyz",
        "RUNTIME.txt",
        f"{PROJECT}-md-1.ener",
        f"{PROJECT}-md-pos-1.xyz",
        f"{PROJECT}-md-vel-1.xyz",
    ]:
        shutil.copyfile(folder / src, dest / src)
    with (
        open(folder / "md.out", "rb") as fin,
        gzip.GzipFile(dest / "md.out.gz", "wb", compresslevel=9, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout)


if __name__ == "__main__":
    main()
