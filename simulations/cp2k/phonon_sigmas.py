"""Per-element rms thermal displacements of bulk CsPbBr3 from CP2K AIMD (the thickness
series' frozen-phonon sigmas; issue 5).

The frozen-phonon model of ``stemqd.simulate`` displaces every atom independently by a
Gaussian of rms ``sigma`` per Cartesian direction, so the quantity it needs is the
single-site mean-square displacement <u_x²> = U_iso of each element. This recipe computes it
from NVT AIMD of a periodic supercell of cubic CsPbBr3:

* structure: n x n x n cubic cells (default 2: 40 atoms, 11.74 Å) at a = 5.87 Å, the
  pseudo-cubic room-temperature lattice constant stemqd uses everywhere;
* electronic structure: the study's AIMD model (methods.md §4: PBE, GTH-PBE
  pseudopotentials, DZVP-MOLOPT-SR), with a 200 Ry / 40 Ry cutoff, EPS_SCF 1e-6 and
  EPS_DEFAULT 1e-10 instead of the dots' 300 Ry / 1e-8 / 1e-12 (5x cheaper per step on
  2 cores: 18 s instead of 87 s);
* dynamics: the study's stage chain without the geometry optimisation
  (:func:`stemqd.aimd.cp2k.study_stages`): CSVR NVT at 300 K, 10 fs steps, equilibration
  with a 15 fs time constant, then production with 1 ps;
* analysis (:func:`stemqd.aimd.rmsf.element_msd`): production frames with the
  mass-weighted centre-of-mass drift removed; sigma = sqrt(<|u|²>/3) per element about each
  atom's mean position; error from block averages.

Limits, stated in the output: a 2 x 2 x 2 cell holds only the Gamma, X, M and R phonons
(the zone-boundary octahedral tilts and the Cs rattling that dominate the displacements
are among them; long-wavelength acoustic modes are missing); nuclei are classical (at
300 K, hbar omega < kT for all modes of CsPbBr3, < 5 THz); a few ps do not fully sample
the slowest tilt dynamics, which the block error reflects.

Exact commands (from the repository root; Debian's ``apt-get install cp2k``)::

    .venv/bin/python simulations/cp2k/phonon_sigmas.py run --workdir runs/bulk_aimd
    .venv/bin/python simulations/cp2k/phonon_sigmas.py analyse --workdir runs/bulk_aimd \\
        -o simulations/reference/cspbbr3_phonon_sigmas.json

``run`` writes the inputs and runs them (``--inputs-only`` to stop after writing);
``analyse`` reads whatever production frames exist, so a run stopped early still gives a
(less precise) answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from stemqd.aimd.cp2k import study_stages, write_cp2k_inputs
from stemqd.aimd.readers import read_xyz_trajectory
from stemqd.aimd.rmsf import element_msd
from stemqd.provenance import versions
from stemqd.simulate import cspbbr3_slab

PROJECT = "bulk"
DFT = dict(cutoff_Ry=200.0, rel_cutoff_Ry=40.0, eps_scf=1e-6, eps_default=1e-10)


def write_inputs(workdir, cells, lattice_constant_A, temperature_K, equilibration_ps,
                 production_ps, seed):
    """Write the CP2K inputs and ``run.sh`` for the bulk supercell; return the input paths."""
    atoms = cspbbr3_slab(cells, lattice_constant_A=lattice_constant_A, cells=cells)
    stages = study_stages(temperature_K=temperature_K, equilibration_ps=equilibration_ps,
                          production_ps=production_ps, geo_opt=False)
    return write_cp2k_inputs(atoms, workdir, stages=stages, project=PROJECT, periodic=True,
                             mo_print=(), seed=seed, **DFT)


def run(args):
    workdir = Path(args.workdir)
    inputs = write_inputs(workdir, args.cells, args.lattice_constant, args.temperature,
                          args.equilibration_ps, args.production_ps, args.seed)
    print("wrote", ", ".join(str(p) for p in inputs))
    if args.inputs_only:
        return 0
    mpirun = shutil.which("mpirun")
    if shutil.which("cp2k.psmp") is None or mpirun is None:
        print("error: cp2k.psmp and mpirun are needed (apt-get install cp2k)", file=sys.stderr)
        return 2
    env = dict(os.environ, OMP_NUM_THREADS="1",
               CP2K_DATA_DIR=os.environ.get("CP2K_DATA_DIR", "/usr/share/cp2k"))
    t0 = time.perf_counter()
    for inp in inputs:
        cmd = [mpirun, "--allow-run-as-root", "-np", str(args.processes), "cp2k.psmp",
               "-i", inp.name, "-o", f"{inp.stem}.out"]
        print("running", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=workdir, env=env, check=True)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def analyse(args):
    workdir = Path(args.workdir)
    pos = workdir / f"{PROJECT}-production-pos-1.xyz"
    traj = read_xyz_trajectory(pos)
    frames = traj.values[args.skip:]
    if len(frames) < 2 * args.blocks:
        print(f"error: {len(frames)} production frames in {pos}; need at least "
              f"{2 * args.blocks}", file=sys.stderr)
        return 2
    table = element_msd(frames, traj.symbols, n_blocks=args.blocks)
    inp = workdir / "production.inp"
    result = {
        "what": "per-element rms thermal displacement per Cartesian direction of bulk cubic "
                "CsPbBr3 from PBE AIMD (simulations/cp2k/phonon_sigmas.py)",
        "sigma_A": {el: round(float(r.sigma_A), 4) for el, r in table.iterrows()},
        "sigma_err_A": {el: round(float(r.sigma_err_A), 4) for el, r in table.iterrows()},
        "u_iso_A2": {el: round(float(r.u_iso_A2), 5) for el, r in table.iterrows()},
        "sigma_parallel_perpendicular_A": {
            el: [round(float(r.sigma_min_A), 4), round(float(r.sigma_max_A), 4)]
            for el, r in table.iterrows()},
        "frames": int(len(frames)),
        "production_ps": float((traj.time_fs[-1] - traj.time_fs[args.skip]) / 1000.0),
        "timestep_fs": traj.timestep_fs,
        "blocks": args.blocks,
        "atoms": len(traj.symbols),
        "mean_temperature_K": _mean_temperature(workdir),
        "dft": DFT,
        "limits": "2x2x2 supercell (Gamma, X, M, R phonons only); classical nuclei; "
                  "PBE at the experimental pseudo-cubic a = 5.87 Å",
        "input_sha256": hashlib.sha256(inp.read_bytes()).hexdigest() if inp.exists() else None,
        "trajectory_sha256": hashlib.sha256(pos.read_bytes()).hexdigest(),
        "versions": versions(),
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        out = Path(args.output)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    print(text, end="")
    return 0


def _mean_temperature(workdir):
    ener = workdir / f"{PROJECT}-production-1.ener"
    if not ener.exists():
        return None
    from stemqd.aimd.readers import read_ener
    return round(float(read_ener(ener)["temperature_K"].mean()), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="write the CP2K inputs and run them")
    p.add_argument("--workdir", required=True)
    p.add_argument("--cells", type=int, default=2, help="supercell edge in unit cells")
    p.add_argument("--lattice-constant", type=float, default=5.87, help="Å")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--equilibration-ps", type=float, default=0.5)
    p.add_argument("--production-ps", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--processes", type=int, default=2, help="MPI ranks")
    p.add_argument("--inputs-only", action="store_true")
    p.set_defaults(func=run)
    a = sub.add_parser("analyse", help="per-element sigmas from the production trajectory")
    a.add_argument("--workdir", required=True)
    a.add_argument("--skip", type=int, default=0, help="production frames to drop first")
    a.add_argument("--blocks", type=int, default=5, help="blocks for the standard error")
    a.add_argument("-o", "--output", help="JSON file to write (atomically)")
    a.set_defaults(func=analyse)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
