"""Per-element rms thermal displacements of bulk CsPbBr3 from CP2K AIMD (the thickness
series' frozen-phonon sigmas; issue 5).

The frozen-phonon model of ``stemqd.simulation`` displaces every atom independently by a
Gaussian of rms ``sigma`` per Cartesian direction, so the quantity it needs is the
single-site mean-square displacement <u_x²> = U_iso of each element. This recipe computes it
from NVT AIMD of a periodic supercell of cubic CsPbBr3:

* structure: n x n x n cubic cells (default 2: 40 atoms, 11.74 Å) at a = 5.87 Å, the
  pseudo-cubic room-temperature lattice constant stemqd uses everywhere;
* electronic structure: the study's AIMD model (:mod:`stemqd.aimd.cp2k`: PBE, GTH-PBE
  pseudopotentials, DZVP-MOLOPT-SR), with a 200 Ry / 40 Ry cutoff, EPS_SCF 1e-6 and
  EPS_DEFAULT 1e-10 instead of the dots' 300 Ry / 1e-8 / 1e-12 (5x cheaper per step on
  2 cores: 18 s instead of 87 s);
* dynamics: the study's stage chain without the geometry optimisation
  (:func:`stemqd.aimd.cp2k.study_stages`): CSVR NVT at 300 K, 10 fs steps, equilibration
  with a 15 fs time constant, then production with 1 ps;
* analysis (:func:`stemqd.aimd.mobility.element_msd`): production frames with the
  mass-weighted centre-of-mass drift removed; sigma = sqrt(<|u|²>/3) per element, error
  from block averages. Two references: the ideal cubic sites (``sigma_A``: what a cubic
  structure model such as the thickness series needs, since static or slow octahedral
  tilts displace the atoms from those sites as far as the simulation is concerned) and each
  atom's own mean position (``thermal_sigma_A``: vibration about the tilted structure).

Limits, stated in the output: a 2 x 2 x 2 cell holds only the Gamma, X, M and R phonons
(the zone-boundary octahedral tilts and the Cs rattling that dominate the displacements
are among them; long-wavelength acoustic modes are missing); nuclei are classical (at
300 K, hbar omega < kT for all modes of CsPbBr3, < 5 THz); a few ps do not fully sample
the slowest tilt dynamics, which the block error reflects.

Exact commands (from the repository root; Debian's ``apt-get install cp2k``), for the
a = 5.87 Å run (``--lattice-constant 6.00`` and ``a6.00`` for the other)::

    .venv/bin/python simulations/cp2k/phonon_sigmas.py run --workdir runs/bulk_aimd_a5.87
    .venv/bin/python simulations/cp2k/phonon_sigmas.py collect --workdir runs/bulk_aimd_a5.87 \
        simulations/reference/cspbbr3_bulk_aimd/a5.87
    .venv/bin/python simulations/cp2k/phonon_sigmas.py analyse \
        --workdir simulations/reference/cspbbr3_bulk_aimd/a5.87 --blocks 4 \
        -o simulations/reference/cspbbr3_bulk_aimd/a5.87/phonon_sigmas.json

``run`` writes the inputs and runs them (``--inputs-only`` to stop after writing);
``collect`` keeps the inputs, energies and production positions (gzipped, about 80 kB);
``analyse`` reads whatever production frames exist, so a run stopped early still gives a
(less precise) answer, and gives the same checksums on a run folder and its collected copy.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ase.io import read

from stemqd.aimd.cp2k import study_stages, write_cp2k_inputs
from stemqd.aimd.mobility import element_msd
from stemqd.aimd.readers import read_ener, read_xyz_trajectory
from stemqd.files import atomic_write_bytes, atomic_write_text, sha256_file
from stemqd.materials import CSPBBR3_LATTICE_CONSTANT_A
from stemqd.provenance import versions
from stemqd.simulation import cspbbr3_slab

PROJECT = "bulk"
DFT = dict(cutoff_Ry=200.0, rel_cutoff_Ry=40.0, eps_scf=1e-6, eps_default=1e-10)


def write_inputs(
    workdir, cells, lattice_constant_A, temperature_K, equilibration_ps, production_ps, seed
):
    """Write the CP2K inputs and ``run.sh`` for the bulk supercell; return the input paths."""
    atoms = cspbbr3_slab(cells, lattice_constant_A=lattice_constant_A, cells=cells)
    stages = study_stages(
        temperature_K=temperature_K,
        equilibration_ps=equilibration_ps,
        production_ps=production_ps,
        geo_opt=False,
    )
    return write_cp2k_inputs(
        atoms, workdir, stages=stages, project=PROJECT, periodic=True, mo_print=(), seed=seed, **DFT
    )


def run(args):
    workdir = Path(args.workdir)
    inputs = write_inputs(
        workdir,
        args.cells,
        args.lattice_constant,
        args.temperature,
        args.equilibration_ps,
        args.production_ps,
        args.seed,
    )
    print("wrote", ", ".join(str(p) for p in inputs))
    if args.inputs_only:
        return 0
    mpirun = shutil.which("mpirun")
    if shutil.which("cp2k.psmp") is None or mpirun is None:
        print("error: cp2k.psmp and mpirun are needed (apt-get install cp2k)", file=sys.stderr)
        return 2
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        CP2K_DATA_DIR=os.environ.get("CP2K_DATA_DIR", "/usr/share/cp2k"),
    )
    t0 = time.perf_counter()
    for inp in inputs:
        cmd = [
            mpirun,
            "--allow-run-as-root",
            "-np",
            str(args.processes),
            "cp2k.psmp",
            "-i",
            inp.name,
            "-o",
            f"{inp.stem}.out",
        ]
        print("running", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=workdir, env=env, check=True)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


def _find(workdir, name):
    """``workdir/name``, or its gzipped copy (as :func:`collect` stores it)."""
    path = Path(workdir) / name
    gz = path.with_name(name + ".gz")
    return gz if gz.exists() and not path.exists() else path


KEPT = (
    "dot.xyz",
    "equilibration.inp",
    "production.inp",
    f"{PROJECT}-equilibration-1.ener",
    f"{PROJECT}-production-1.ener",
    f"{PROJECT}-production-pos-1.xyz",
)


def collect(args):
    """Copy what the analysis needs (inputs, energies, production positions) to a folder."""
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        data = (Path(args.workdir) / name).read_bytes()
        if name.endswith((".xyz", ".ener")) and name != "dot.xyz":
            atomic_write_bytes(dest / (name + ".gz"), gzip.compress(data, mtime=0))
        else:
            atomic_write_bytes(dest / name, data)
    print("copied", ", ".join(KEPT), "to", dest)
    return 0


def analyse(args):
    workdir = Path(args.workdir)
    pos = _find(workdir, f"{PROJECT}-production-pos-1.xyz")
    traj = read_xyz_trajectory(pos)
    frames = traj.values[args.skip :]
    if len(frames) < 2 * args.blocks:
        print(
            f"error: {len(frames)} production frames in {pos}; need at least {2 * args.blocks}",
            file=sys.stderr,
        )
        return 2
    start = read(workdir / "dot.xyz")
    sites = start.positions
    cells = round(start.get_chemical_symbols().count("Pb") ** (1 / 3))
    if len(sites) != len(traj.symbols):
        print(f"error: {workdir / 'dot.xyz'} does not match the trajectory", file=sys.stderr)
        return 2
    cubic = element_msd(frames, traj.symbols, reference=sites, n_blocks=args.blocks)
    thermal = element_msd(frames, traj.symbols, n_blocks=args.blocks)

    def col(table, name, digits=4):
        return {el: round(float(v), digits) for el, v in table[name].items()}

    def min_max(table):
        return {
            el: [round(float(r.sigma_min_A), 4), round(float(r.sigma_max_A), 4)]
            for el, r in table.iterrows()
        }

    inp = workdir / "production.inp"
    a = _cell_edge(inp) / cells
    result = {
        "what": "per-element rms displacement per Cartesian direction of bulk CsPbBr3 from "
        "PBE AIMD (simulations/cp2k/phonon_sigmas.py); sigma_A about the ideal "
        "cubic sites (the frozen-phonon sigmas of a cubic model), thermal_sigma_A "
        "about each atom's mean position",
        "sigma_A": col(cubic, "sigma_A"),
        "sigma_err_A": col(cubic, "sigma_err_A"),
        "u_iso_A2": col(cubic, "u_iso_A2", 5),
        "sigma_min_max_A": min_max(cubic),
        "thermal_sigma_A": col(thermal, "sigma_A"),
        "thermal_sigma_err_A": col(thermal, "sigma_err_A"),
        "thermal_sigma_min_max_A": min_max(thermal),
        "skipped_frames": args.skip,
        "frames": int(len(frames)),
        "production_ps": float((traj.time_fs[-1] - traj.time_fs[args.skip]) / 1000.0),
        "timestep_fs": traj.timestep_fs,
        "blocks": args.blocks,
        "atoms": len(traj.symbols),
        "supercell": [cells] * 3,
        "lattice_constant_A": round(a, 4),
        "mean_temperature_K": _mean_temperature(workdir),
        "dft": DFT,
        "limits": f"{cells}x{cells}x{cells} supercell (for 2: Gamma, X, M and R phonons only); "
        f"classical nuclei; PBE at a = {a:.2f} Å; "
        "'thermal' is about the mean over this run, so motion slower than the run "
        "counts as static",
        "input_sha256": sha256_file(inp),
        "trajectory_sha256": _sha256_text(pos),
        "versions": versions(),
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.output:
        atomic_write_text(args.output, text)
    print(text, end="")
    return 0


def _cell_edge(inp):
    """Cubic cell edge (Å) from the ``ABC`` line of a CP2K input."""
    for line in inp.read_text().splitlines():
        if line.split()[:1] == ["ABC"]:
            return float(line.split()[1])
    raise ValueError(f"{inp}: no ABC line")


def _sha256_text(path):
    """Checksum of the uncompressed content, the same for a file and its gzipped copy."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _mean_temperature(workdir):
    ener = _find(workdir, f"{PROJECT}-production-1.ener")
    if not ener.exists():
        return None
    return round(float(read_ener(ener)["temperature_K"].mean()), 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="write the CP2K inputs and run them")
    p.add_argument("--workdir", required=True)
    p.add_argument("--cells", type=int, default=2, help="supercell edge in unit cells")
    p.add_argument("--lattice-constant", type=float, default=CSPBBR3_LATTICE_CONSTANT_A, help="Å")
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
    c = sub.add_parser("collect", help="keep the inputs, energies and production positions")
    c.add_argument("--workdir", required=True)
    c.add_argument("dest", help="folder to copy them to (trajectories gzipped)")
    c.set_defaults(func=collect)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
