"""``stemqd aimd``: dots, CP2K inputs and the AIMD analyses.

Each analysis subcommand reads CP2K output (or a CSV), prints its key numbers and, with
``--out DIR``, writes CSV tables with JSON provenance sidecars and a PNG figure, all
atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..materials import CSPBBR3_LATTICE_CONSTANT_A


def _plot(path, draw, **layout):
    """Draw with ``draw(fig)`` on an Agg figure and save it atomically."""
    from matplotlib.figure import Figure

    from ..files import save_figure

    fig = Figure(figsize=layout.get("figsize", (6.0, 4.0)))
    draw(fig)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, bbox_inches="tight")


def _parse_pair(text, what):
    try:
        a, b = text.split(":")
        return float(a), float(b)
    except ValueError:
        raise InputError(f"{what} {text!r}: expected two numbers as A:B") from None


def _temperatures(text):
    """``300``, ``10,77,300`` or ``10:300:10`` (start:stop:step, inclusive) in K."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0:
                raise ValueError
            lo, hi, step = parts
            return np.arange(lo, hi + 0.5 * step, step)
        return np.array([float(p) for p in text.split(",")])
    except ValueError:
        raise InputError(f"--temperature {text!r}: use 300, 10,77,300 or 10:300:10") from None


def _params(args):
    """The parsed options, for a sidecar's parameters."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _out(args):
    if args.out is None:
        return None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


# --------------------------------------------------------------------------- build / cp2k
def _cmd_build(args):
    from ..aimd import build
    from ..files import write_json
    from ..provenance import record

    atoms = build.build_dot(args.size, shell=args.shell, shell_layers=args.shell_layers)
    n = atoms.info["n"]
    q = atoms.info["charge"]
    print(
        f"{build.formula(atoms)}  n={n}  edge={n * atoms.info['lattice_constant_A'] / 10:.2f} nm  "
        f"atoms={len(atoms)}  formal charge q={q:+d} (CHARGE 0 adds {q} electrons)  "
        f"cell={atoms.cell[0, 0] / 10:.1f} nm"
    )
    out = _out(args)
    if out is not None:
        stem = args.name or f"dot_n{n}{'_' + args.shell if args.shell else ''}"
        for fmt in args.format:
            path = build.write_structure(atoms, out / f"{stem}.{fmt}")
            print(f"wrote {path}")
        write_json(
            out / f"{stem}.json",
            {
                **record(
                    {"size": str(args.size), "shell": args.shell, "shell_layers": args.shell_layers}
                ),
                "results": {
                    "formula": build.formula(atoms),
                    "n": n,
                    "charge": q,
                    "n_atoms": len(atoms),
                    "composition": build.dot_composition(n, args.shell_layers if args.shell else 0),
                },
            },
        )
    return 0


def _cmd_cp2k(args):
    from ..aimd import build, cp2k

    atoms = build.build_dot(args.size, shell=args.shell, shell_layers=args.shell_layers)
    if args.series and args.frozen:
        raise InputError("--series writes its own frozen regions; drop --frozen")
    fixed = None
    if args.frozen:
        fixed = cp2k.frozen_indices(atoms, args.frozen_cells, which=args.frozen)
    stages = cp2k.study_stages(
        temperature_K=args.temperature,
        equilibration_ps=args.equilibration_ps,
        production_ps=args.production_ps,
        timestep_fs=args.timestep,
        cool_to_K=args.cool_to,
        geo_opt=not args.no_geo_opt,
    )
    mo = tuple(args.mo_print)
    solver = "DIAG" if "MO" in mo else "OT"
    options = dict(cutoff_Ry=args.cutoff, charge_mode=args.charge_mode, mo_print=mo, solver=solver)
    if args.pdos:
        options.update(pdos_each=args.pdos, pdos_nlumo=args.pdos_nlumo)
        if args.pdos_shell is not None:
            options["pdos_lists"] = {
                "shell": cp2k.frozen_indices(atoms, args.pdos_shell, which="shell"),
                "core": cp2k.frozen_indices(atoms, args.pdos_shell, which="core"),
            }
    elif args.pdos_shell is not None:
        raise InputError("--pdos-shell needs --pdos N")
    if args.series:
        from ..aimd import series

        thick = (
            [float(t) for t in args.thicknesses.split(",")]
            if args.thicknesses
            else list(series.STUDY_THICKNESSES_CELLS)
        )
        table = series.write_frozen_series(
            atoms,
            args.out,
            args.series,
            thicknesses_cells=thick,
            include_free=not args.no_free,
            stages=stages,
            project=args.project,
            **options,
        )
        print(f"{build.formula(atoms)}: {len(atoms)} atoms, {args.series} series")
        print(
            table[["run", "shell_cells", "n_fixed", "n_free"]].to_string(
                index=False, float_format=lambda v: f"{v:g}"
            )
        )
        print(f"run each with: sh {Path(args.out)}/<run>/run.sh")
        return 0
    paths = cp2k.write_cp2k_inputs(
        atoms, args.out, stages=stages, project=args.project, fixed=fixed, **options
    )
    print(
        f"{build.formula(atoms)}: {len(atoms)} atoms, q={atoms.info['charge']:+d}, "
        f"CHARGE {'0' if args.charge_mode == 'electrons' else atoms.info['charge']}, "
        f"cell {atoms.cell[0, 0] / 10:.1f} nm"
        + (f", {len(fixed)} fixed atoms ({args.frozen})" if fixed is not None else "")
    )
    for p in paths:
        print(f"wrote {p}")
    print(f"run with: sh {Path(args.out) / 'run.sh'}")
    return 0


# --------------------------------------------------------------------------- readers
def _cmd_gaps(args):
    from ..aimd import readers
    from ..provenance import write_table

    table = readers.read_gaps(args.logs, style=args.style, missing=args.missing)
    g = table["gap_eV"]
    print(
        f"{len(table)} MD steps ({table.attrs['style']} style), steps {table['step'].iloc[0]}..{table['step'].iloc[-1]}: "
        f"gap mean {g.mean():.6f} eV, std {1000 * g.std(ddof=0):.3f} meV, "
        f"min {g.min():.6f}, max {g.max():.6f} eV"
    )
    if args.output:
        write_table(
            args.output,
            table,
            parameters={"style": table.attrs["style"], "missing": args.missing},
            inputs=args.logs,
        )
        print(f"wrote {args.output}")
    return 0


def _load_trajectory(args):
    """The ``--pos``/``--vel`` trajectory of an analysis; prints what the loading decided."""
    from ..aimd.trajectory import load_trajectory

    traj = load_trajectory(
        args.pos, getattr(args, "vel", None), dt_fs=args.dt, skip_frames=args.skip_frames
    )
    for note in traj.notes:
        print(f"note: {note}")
    return traj


def _load_gaps(args):
    from ..aimd.trajectory import load_gap_series

    return load_gap_series(args.gap, style=args.style, dt_fs=args.dt, skip=args.skip_frames)


# --------------------------------------------------------------------------- analyses
def _cmd_dos(args):
    from ..aimd.dos import trajectory_dos
    from ..provenance import write_table

    traj = _load_trajectory(args)
    res = trajectory_dos(
        traj,
        from_positions=args.from_positions,
        align=not args.no_align,
        n_dof=args.n_dof,
        derivative=args.derivative,
        temperature_K=args.temperature,
        normalize=args.normalize,
        window=args.window,
        smoothing_meV=args.smoothing,
        quantum_correction=args.quantum_correction,
    )
    if res.rigid_body.note:
        print(f"note: {res.rigid_body.note}")
    print(res.report())
    table, dt = res.table, res.dt_fs
    at, e = table.attrs, table["energy_meV"].to_numpy()
    out = _out(args)
    if out is not None:
        params = _params(args)
        params["dt_fs"] = dt
        write_table(
            out / "dos.csv", table, parameters=params, inputs=[args.pos, args.vel], results=dict(at)
        )

        def draw(fig):
            ax = fig.add_subplot()
            emax = args.max_energy or e[-1]
            sel = e <= emax
            for col in [c for c in table.columns if c.startswith("dos_")]:
                label = "total" if col == "dos_per_meV" else col[4:-8]
                ax.plot(
                    e[sel],
                    table[col].to_numpy()[sel],
                    lw=1.4 if label == "total" else 1.0,
                    color="k" if label == "total" else None,
                    label=label,
                )
            ax.set_xlabel("energy (meV)")
            ax.set_ylabel("DOS (states / meV)")
            ax.legend()

        _plot(out / "dos.png", draw)
        print(f"wrote {out / 'dos.csv'}, {out / 'dos.png'}")
    return 0


def _windows(args, default):
    """The ``--window LO:HI`` options, or ``default``."""
    if not args.window:
        return default
    return [_parse_pair(w, "--window") for w in args.window]


def _cmd_huang_rhys(args):
    from ..aimd.coupling import DEFAULT_WINDOWS_MEV, gap_coupling
    from ..aimd.trajectory import count_free_atoms
    from ..provenance import write_table

    gaps = _load_gaps(args)
    windows_meV = _windows(args, DEFAULT_WINDOWS_MEV)
    n_free = args.n_free
    if n_free is None and args.vel:
        n_free = count_free_atoms(args.vel)
    hr = gap_coupling(
        gaps,
        args.temperature,
        windows=windows_meV,
        n_free=n_free,
        convention=args.convention,
        taper=args.taper,
        detrend=args.detrend,
    )
    spec, windows = hr.spectrum, hr.windows
    print(hr.report())
    out = _out(args)
    if out is not None:
        params = _params(args)
        params.update(dt_fs=gaps.dt_fs, windows=[list(w) for w in windows_meV])
        results = hr.results()
        inputs = [args.gap] + ([args.vel] if args.vel else [])
        write_table(
            out / "huang_rhys_spectrum.csv",
            spec,
            parameters=params,
            inputs=inputs,
            results=results,
        )
        write_table(
            out / "huang_rhys_windows.csv",
            windows,
            parameters=params,
            inputs=inputs,
            results=results,
        )

        def draw(fig):
            ax = fig.add_subplot()
            e = spec["energy_meV"].to_numpy()
            sel = (e > 0) & (e <= args.max_energy)
            ax.plot(e[sel], spec["S_per_meV"].to_numpy()[sel], color="k", lw=1.0)
            for _, w in windows.iterrows():
                ax.axvspan(w["lo_meV"], w["hi_meV"], alpha=0.15)
            ax.set_xlabel("energy (meV)")
            ax.set_ylabel("S (1/meV)")
            ax.set_title(
                f"Huang-Rhys spectrum, T = {args.temperature:g} K, Λ = {hr.huang_rhys['reorganization_meV']:.3g} meV"
            )

        _plot(out / "huang_rhys.png", draw)
        print(
            f"wrote {out / 'huang_rhys_spectrum.csv'}, {out / 'huang_rhys_windows.csv'}, {out / 'huang_rhys.png'}"
        )
    return 0


def _cmd_linewidth(args):
    from ..aimd import linewidth
    from ..provenance import write_table

    if not args.mode:
        raise InputError("give at least one --mode ENERGY_meV:S")
    modes = [_parse_pair(m, "--mode") for m in args.mode]
    energy = [m[0] for m in modes]
    s = [m[1] for m in modes]
    temps = _temperatures(args.temperature)
    lam = linewidth.reorganization_energy(s, energy)
    table = linewidth.linewidth_table(temps, s, energy)
    if len(temps) == 1:
        print(f"{table['fwhm_meV'].iloc[0]:.4f} meV")
    else:
        print(f"# Lambda = {lam:.6g} meV")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    params = {"modes_meV_S": modes, "temperature": args.temperature}
    if args.output:
        write_table(args.output, table, parameters=params, results={"reorganization_meV": lam})
    if args.plot:

        def draw(fig):
            ax = fig.add_subplot()
            ax.plot(table["temperature_K"], table["fwhm_meV"], "o-", color="k")
            ax.set_xlabel("temperature (K)")
            ax.set_ylabel("FWHM Γ (meV)")
            ax.set_title(f"Γ(T) = 2√(2 ln2)·√(2Λ k_B T), Λ = {lam:.3g} meV")

        _plot(args.plot, draw)
    return 0


def _cmd_dephasing(args):
    from ..aimd.optical_response import gap_dephasing
    from ..provenance import write_table

    gaps = _load_gaps(args)
    both = gap_dephasing(gaps, max_time_fs=args.max_time, fit=args.fit, estimator=args.estimator)
    res, hist = both.dephasing, both.histogram
    print(both.report())
    out = _out(args)
    if out is not None:
        params = _params(args)
        params["dt_fs"] = gaps.dt_fs
        results = both.results()
        write_table(
            out / "dephasing.csv",
            res["table"],
            parameters=params,
            inputs=[args.gap],
            results=results,
        )
        write_table(
            out / "gap_histogram.csv",
            hist["table"],
            parameters=params,
            inputs=[args.gap],
            results=results,
        )
        tab, ht = res["table"], hist["table"]

        def draw(fig):
            a1, a2 = fig.subplots(1, 2)
            a1.plot(tab["time_fs"], tab["D"], color="k", label="D(t)")
            a1.plot(
                tab["time_fs"],
                tab["D_fit"],
                "--",
                label=f"{args.fit} fit, τ = {res['tau_fs']:.1f} fs",
            )
            a1.set_xlabel("time (fs)")
            a1.set_ylabel("D(t)")
            a1.legend()
            a2.bar(
                ht["center_meV"],
                ht["density_per_meV"],
                width=np.diff(ht["center_meV"]).mean() if len(ht) > 1 else 1.0,
                color="0.7",
            )
            a2.plot(
                ht["center_meV"], ht["fit"], color="k", label=f"FWHM {hist['fwhm_meV']:.2f} meV"
            )
            a2.set_xlabel("gap - <gap> (meV)")
            a2.set_ylabel("density (1/meV)")
            a2.legend()

        _plot(out / "dephasing.png", draw, figsize=(9.0, 3.6))
        print(
            f"wrote {out / 'dephasing.csv'}, {out / 'gap_histogram.csv'}, {out / 'dephasing.png'}"
        )
    return 0


def _cmd_rmsf(args):
    from ..aimd.mobility import trajectory_rmsf
    from ..provenance import write_table

    res = trajectory_rmsf(
        _load_trajectory(args),
        align="none" if args.no_align else ("icp" if args.icp else "kabsch"),
        reference=args.reference,
        lattice_constant_A=args.lattice_constant,
        layer_reference=args.layer_reference,
        rounding=args.rounding,
    )
    if res.alignment.note:
        print(f"note: {res.alignment.note}")
    print(res.report())
    per_atom, table = res.per_atom, res.layers
    out = _out(args)
    if out is not None:
        params = _params(args)
        write_table(out / "rmsf_atoms.csv", per_atom, parameters=params, inputs=[args.pos])
        write_table(out / "rmsf_layers.csv", table, parameters=params, inputs=[args.pos])

        def draw(fig):
            ax = fig.add_subplot()
            sub = table[(table["layer"] >= 0) & (table["element"] != "all")]
            for el, grp in sub.groupby("element"):
                ax.errorbar(
                    grp["layer"],
                    grp["rmsf_mean_A"],
                    yerr=grp["rmsf_std_A"],
                    marker="o",
                    capsize=3,
                    label=el,
                )
            ax.set_xlabel("layer below the surface (unit cells)")
            ax.set_ylabel("RMSF (Å)")
            ax.legend()

        _plot(out / "rmsf.png", draw)
        print(f"wrote {out / 'rmsf_atoms.csv'}, {out / 'rmsf_layers.csv'}, {out / 'rmsf.png'}")
    return 0


# --------------------------------------------------------------------------- series
def _read_runs(args):
    from ..aimd import series

    return [
        series.read_run(d, skip=args.skip_frames, style=args.style, dt_fs=args.dt)
        for d in args.runs
    ]


def _cmd_series(args):
    from ..aimd import series
    from ..provenance import write_table

    runs = _read_runs(args)
    res = series.analyse_series(
        runs,
        args.kind,
        thicknesses_cells=args.thickness,
        n_free=args.n_free,
        temperature_K=args.temperature,
        windows=_windows(args, series.FROZEN_CORE_WINDOWS_MEV),
        taper=args.taper,
    )
    table, fits = res.table, res.fits
    print(res)
    out = _out(args)
    if out is None:
        return 0
    params = _params(args)
    params["windows"] = res.windows
    results = {"fits": fits.to_dict(orient="records"), "logs": [str(r["log"]) for r in runs]}
    write_table(
        out / "series.csv",
        table,
        parameters=params,
        inputs=[r["log"] for r in runs],
        results=results,
    )
    x = table["shell_cells"].to_numpy()
    label = (
        "frozen-shell thickness (unit cells)"
        if args.kind == "frozen-shell"
        else ("free-shell thickness (unit cells)")
    )

    def draw(fig):
        if args.kind == "frozen-core":
            a1, a2 = fig.subplots(1, 2)
        else:
            a1, a2 = fig.subplots(1, 1), None
        a1.plot(x, table["gap_fwhm_meV"], "o-", color="k", label="gap FWHM")
        for col, lab in (("homo_sigma_meV", "HOMO σ"), ("lumo_sigma_meV", "LUMO σ")):
            if col in table:
                a1.plot(x, table[col], "s--", label=lab)
        a1.set_xlabel(label)
        a1.set_ylabel("meV")
        a1.legend()
        if a2 is not None:
            xs = np.linspace(np.nanmin(x), np.nanmax(x), 50) if np.isfinite(x).any() else x
            for _, f in fits.iterrows():
                col = f"S_per_free_atom_{f['window']}"
                (line,) = a2.plot(x, table[col], "o", label=f"{f['window']}")
                a2.plot(xs, f["intercept"] + f["slope"] * xs, "-", color=line.get_color())
            a2.set_xlabel(label)
            a2.set_ylabel("S per free atom")
            a2.legend()

    _plot(out / "series.png", draw, figsize=(9.0, 3.6) if args.kind == "frozen-core" else None)
    print(f"wrote {out / 'series.csv'}, {out / 'series.png'}")
    return 0


def _cmd_temperature_series(args):
    from ..aimd import temperature
    from ..aimd.coupling import DEFAULT_WINDOWS_MEV
    from ..provenance import write_table

    runs = _read_runs(args)
    res = temperature.temperature_series(
        runs,
        temperatures_K=args.temperature,
        reference_K=args.reference_temperature,
        windows=_windows(args, DEFAULT_WINDOWS_MEV),
        fraction_at_K=args.fraction_at,
        fit=args.fit,
        max_time_fs=args.max_time,
        taper=args.taper,
    )
    table = res["table"]
    ref = res["reference"]
    print(
        f"{len(runs)} runs; harmonic Γ(T) from {ref['run']} at {ref['temperature_K']:g} K: "
        f"Λ = {res['reorganization_windows_meV']:.4g} meV (windows), "
        f"{res['reorganization_full_meV']:.4g} meV (whole spectrum)"
    )
    print(res["windows"].to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    for name in table.loc[~table["dephasing_decayed"].astype(bool), "run"]:
        print(f"note: {name}: D(t) does not decay within the lags used; its linewidth is not a fit")
    print(
        f"sideband fraction of the {res['fraction_at_K']:g} K linewidth: "
        f"{100 * res['sideband_fraction']:.1f} %"
    )
    out = _out(args)
    if out is None:
        return 0
    params = _params(args)
    params["windows"] = [list(w) for w in _windows(args, DEFAULT_WINDOWS_MEV)]
    results = {
        k: res[k]
        for k in (
            "reference",
            "reorganization_windows_meV",
            "reorganization_full_meV",
            "fraction_at_K",
            "sideband_fraction",
        )
    }
    results["reference_windows"] = res["windows"].to_dict(orient="records")
    write_table(
        out / "temperature_series.csv",
        table,
        parameters=params,
        inputs=[r["log"] for r in runs],
        results=results,
    )
    curve = res["curve"]

    decayed = table["dephasing_decayed"].to_numpy(dtype=bool)

    def draw(fig):
        ax = fig.add_subplot()
        t, f = table["temperature_K"].to_numpy(), table["dephasing_fwhm_meV"].to_numpy()
        ax.plot(t[decayed], f[decayed], "o", color="k", label="dephasing (AIMD)")
        if (~decayed).any():
            ax.plot(t[~decayed], f[~decayed], "o", mfc="none", color="k", label="D(t) not decayed")
        ax.plot(
            curve["temperature_K"],
            curve["harmonic_fwhm_meV"],
            "-",
            label=f"harmonic, S at {ref['temperature_K']:g} K",
        )
        ax.set_xlabel("temperature (K)")
        ax.set_ylabel("FWHM (meV)")
        ax.legend()

    _plot(out / "temperature_series.png", draw)
    print(f"wrote {out / 'temperature_series.csv'}, {out / 'temperature_series.png'}")
    return 0


def _cmd_localisation(args):
    from ..aimd import pdos
    from ..provenance import write_table

    labels = [x.strip() for x in args.atoms.split(",") if x.strip()] if args.atoms else None
    res = pdos.localisation(
        args.run_dir,
        md_project=args.md_project,
        relaxed_project=args.relaxed_project,
        labels=labels,
        skip=args.skip_frames,
    )
    edges = [e for e, on in (("homo", args.homo), ("lumo", args.lumo)) if on] or ["homo", "lumo"]
    avg = res["average"]
    keep = avg["quantity"].str.startswith(tuple(f"{e}_" for e in edges))
    summary = avg[keep | (avg["quantity"] == "gap_eV")].reset_index(drop=True)
    print(
        f"PDOS of {args.run_dir}: MD project {res['md_project']}, relaxed "
        f"{res['relaxed_project']}; atom sets {', '.join(res['labels'])}"
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    cubes = None
    if args.cube:
        import pandas as pd

        # Real-space check of the PDOS weights: |psi|^2 of each cube per Voronoi region.
        cubes = pd.DataFrame([{"cube": Path(c).name, **pdos.cube_weights(c)} for c in args.cube])
        print("MO cubes integrated over nearest-atom regions:")
        print(cubes.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    out = _out(args)
    if out is None:
        return 0
    params = _params(args)
    params.update(md_project=res["md_project"], relaxed_project=res["relaxed_project"])
    inputs = sorted(str(p) for p in Path(args.run_dir).glob("*.pdos*"))
    written = []
    if res["steps"] is not None:
        write_table(out / "localisation_steps.csv", res["steps"], parameters=params, inputs=inputs)
        written.append(out / "localisation_steps.csv")
    write_table(out / "localisation.csv", summary, parameters=params, inputs=inputs)
    written.append(out / "localisation.csv")
    steps, relaxed = res["steps"], res["relaxed"]

    def draw(fig):
        axes = np.atleast_1d(fig.subplots(1, len(edges), squeeze=False)[0])
        for ax, edge in zip(axes, edges):
            for lab in res["labels"]:
                col = f"{edge}_{lab}"
                if steps is not None:
                    (line,) = ax.plot(steps["step"], 100 * steps[col], "-", label=lab)
                    color = line.get_color()
                else:
                    color = None
                if relaxed is not None:
                    ax.axhline(100 * relaxed[col].iloc[0], ls="--", color=color, lw=0.8)
            ax.set_xlabel("MD step" if steps is not None else "")
            ax.set_ylabel(f"{'VBM (HOMO)' if edge == 'homo' else 'CBM (LUMO)'} density (%)")
            ax.set_ylim(-2, 102)
            ax.legend(fontsize="small")
            ax.set_title("dashed: relaxed geometry" if relaxed is not None else "")

    _plot(out / "localisation.png", draw, figsize=(4.5 * len(edges), 3.6))
    written.append(out / "localisation.png")
    if cubes is not None:
        write_table(out / "localisation_cubes.csv", cubes, parameters=params, inputs=args.cube)
        written.append(out / "localisation_cubes.csv")
    print("wrote " + ", ".join(map(str, written)))
    return 0


# --------------------------------------------------------------------------- parser
def _traj_args(p, vel=True):
    p.add_argument("--pos", help="CP2K *-pos-1.xyz trajectory (Å)")
    if vel:
        p.add_argument("--vel", help="CP2K *-vel-1.xyz trajectory (bohr/au_t)")
    p.add_argument(
        "--dt", type=float, help="time between frames (fs); default from the frame titles"
    )
    p.add_argument("--skip-frames", type=int, default=0, help="discard this many leading frames")
    p.add_argument("-o", "--out", help="output folder for CSV, JSON and PNG")


def _gap_args(p):
    p.add_argument("gap", help="CP2K .out log (or .out.gz) or a CSV with a gap_eV column")
    p.add_argument(
        "--style", default="auto", choices=["auto", "mo_cubes", "mo"], help="log print style"
    )
    p.add_argument("--dt", type=float, help="time step (fs); default from the log")
    p.add_argument("--skip-frames", type=int, default=0, help="discard this many leading steps")
    p.add_argument("-o", "--out", help="output folder for CSV, JSON and PNG")


def add_parser(subparsers):
    """Register ``stemqd aimd`` and its subcommands."""
    aimd = subparsers.add_parser(
        "aimd",
        help="AIMD (CP2K) dots, inputs and analyses",
        description="Build dots, write CP2K inputs and analyse AIMD output "
        "(phonon DOS, Huang-Rhys factors, linewidth, dephasing, RMSF, frozen and "
        "temperature series, band-edge localisation).",
    )
    sub = aimd.add_subparsers(dest="aimd_command", metavar="SUBCOMMAND")
    aimd.set_defaults(func=lambda args: (aimd.print_help(), 2)[1])

    p = sub.add_parser("build", help="build a cubic CsPbBr3 (core/shell) dot")
    p.add_argument("--size", required=True, help="3.6nm, 36A or the edge n in octahedra")
    p.add_argument(
        "--shell", choices=["CsCaBr3"], help="core/shell: Ca replaces Pb in the outer layers"
    )
    p.add_argument(
        "--shell-layers", type=int, default=1, help="outer octahedral layers of the shell"
    )
    p.add_argument("-o", "--out", help="output folder for the structure files")
    p.add_argument("--format", nargs="+", default=["xyz", "cif"], choices=["xyz", "cif"])
    p.add_argument("--name", help="file stem (default dot_n<N>[_shell])")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("cp2k", help="write CP2K inputs (GEO_OPT + NVT stages) for a dot")
    p.add_argument("--size", required=True)
    p.add_argument("--shell", choices=["CsCaBr3"])
    p.add_argument("--shell-layers", type=int, default=1)
    p.add_argument("-o", "--out", required=True, help="folder for the inputs and run.sh")
    p.add_argument("--project", default="dot")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--cool-to", type=float, help="cool to this temperature (K) before production")
    p.add_argument("--equilibration-ps", type=float, default=3.0)
    p.add_argument("--production-ps", type=float, default=10.0)
    p.add_argument("--timestep", type=float, default=10.0, help="fs")
    p.add_argument("--cutoff", type=float, default=300.0, help="Ry")
    p.add_argument(
        "--charge-mode",
        default="electrons",
        choices=["electrons", "closed-shell"],
        help="CHARGE 0 with the q extra electrons (study) or CHARGE q",
    )
    p.add_argument("--frozen", choices=["shell", "core"], help="hold the shell or the core fixed")
    p.add_argument("--frozen-cells", type=float, default=1.0, help="shell thickness in unit cells")
    p.add_argument(
        "--mo-print",
        nargs="+",
        default=["MO_CUBES"],
        choices=["MO_CUBES", "MO"],
        help="HOMO/LUMO print styles (MO switches to diagonalisation)",
    )
    p.add_argument("--no-geo-opt", action="store_true")
    p.add_argument(
        "--series",
        choices=["frozen-shell", "frozen-core"],
        help="write the study's frozen series, one folder per shell thickness plus a free run",
    )
    p.add_argument(
        "--thicknesses",
        help="series shell thicknesses in unit cells (default 0.5,1,1.5,2)",
    )
    p.add_argument("--no-free", action="store_true", help="series without the all-free run")
    p.add_argument(
        "--pdos", type=int, metavar="N", help="print the projected DOS every N steps (&PDOS)"
    )
    p.add_argument("--pdos-nlumo", type=int, default=4, help="empty orbitals in the PDOS")
    p.add_argument(
        "--pdos-shell",
        type=float,
        metavar="CELLS",
        help="also project on the outer CELLS unit cells ('shell') and the rest ('core')",
    )
    p.set_defaults(func=_cmd_cp2k)

    p = sub.add_parser("gaps", help="per-step HOMO, LUMO and gap from CP2K logs")
    p.add_argument("logs", nargs="+", help="CP2K .out logs in run order (restarts last)")
    p.add_argument("--style", default="auto", choices=["auto", "mo_cubes", "mo"])
    p.add_argument("--missing", default="error", choices=["error", "drop"])
    p.add_argument("-o", "--output", help="CSV file")
    p.set_defaults(func=_cmd_gaps)

    p = sub.add_parser("dos", help="phonon DOS and partial DOS (mass-weighted VACF)")
    _traj_args(p)
    p.add_argument("--temperature", type=float, help="K (normalize=temperature, quantum factor)")
    p.add_argument("--normalize", default="dof", choices=["dof", "temperature"])
    p.add_argument(
        "--n-dof", type=float, help="degrees of freedom (default 3N-6 aligned, 3N_mobile frozen)"
    )
    p.add_argument("--no-align", action="store_true", help="keep translation and rotation")
    p.add_argument(
        "--from-positions", action="store_true", help="DOS from positions (omega^2 |x(omega)|^2)"
    )
    p.add_argument("--derivative", default="spectral", choices=["spectral", "central"])
    p.add_argument("--window", choices=["hann"], help="taper")
    p.add_argument("--smoothing", type=float, default=0.0, help="Gaussian broadening sigma (meV)")
    p.add_argument("--quantum-correction", choices=["harmonic", "energy"])
    p.add_argument("--max-energy", type=float, default=40.0, help="plot range (meV)")
    p.set_defaults(func=_cmd_dos)

    p = sub.add_parser("huang-rhys", help="Huang-Rhys spectrum and window sums from a gap series")
    _gap_args(p)
    p.add_argument("--temperature", type=float, required=True, help="trajectory temperature (K)")
    p.add_argument(
        "--window",
        action="append",
        metavar="LO:HI",
        help="energy window in meV (repeatable); default 0.5:3.5, 5.5:8.5, 15.5:18.5",
    )
    p.add_argument("--convention", default="classical", choices=["classical", "quantum"])
    p.add_argument("--taper", choices=["hann"], help="window function of the gap series")
    p.add_argument("--detrend", default="constant", choices=["constant", "linear"])
    p.add_argument("--n-free", type=int, help="free atoms, for the effective S per free atom")
    p.add_argument("--vel", help="velocity trajectory: counts the free atoms of a frozen run")
    p.add_argument("--max-energy", type=float, default=40.0, help="plot range (meV)")
    p.set_defaults(func=_cmd_huang_rhys)

    p = sub.add_parser("linewidth", help="Gaussian FWHM Gamma(T) from Huang-Rhys modes")
    p.add_argument(
        "--mode", action="append", metavar="ENERGY_meV:S", help="mode energy and S (repeatable)"
    )
    p.add_argument("--temperature", default="300", help="K: 300, 10,77,300 or 10:300:10")
    p.add_argument("-o", "--output", help="CSV file")
    p.add_argument("--plot", help="PNG file of Gamma(T)")
    p.set_defaults(func=_cmd_linewidth)

    p = sub.add_parser("dephasing", help="cumulant dephasing D(t), its FWHM and the gap histogram")
    _gap_args(p)
    p.add_argument(
        "--max-time", type=float, help="longest lag (fs); default a quarter of the series"
    )
    p.add_argument("--fit", default="gaussian", choices=["gaussian", "exponential"])
    p.add_argument("--estimator", default="biased", choices=["biased", "unbiased", "circular"])
    p.set_defaults(func=_cmd_dephasing)

    p = sub.add_parser("rmsf", help="RMSF per atom, element and layer below the surface")
    _traj_args(p, vel=False)
    p.add_argument(
        "--lattice-constant",
        type=float,
        default=CSPBBR3_LATTICE_CONSTANT_A,
        help="a (Å) for the layer index (default: cubic CsPbBr3)",
    )
    p.add_argument("--reference", default="mean", choices=["first", "mean"])
    p.add_argument(
        "--layer-reference",
        default="reference",
        choices=["reference", "first"],
        help="structure whose depths define the layers",
    )
    p.add_argument("--rounding", default="floor", choices=["floor", "round"])
    p.add_argument(
        "--icp", action="store_true", help="nearest-neighbour ICP instead of index Kabsch"
    )
    p.add_argument("--no-align", action="store_true")
    p.set_defaults(func=_cmd_rmsf)

    def run_args(p):
        p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders")
        p.add_argument("--style", default="auto", choices=["auto", "mo_cubes", "mo"])
        p.add_argument("--dt", type=float, help="time step (fs); default from the log")
        p.add_argument("--skip-frames", type=int, default=0, help="discard leading steps")
        p.add_argument(
            "--window",
            action="append",
            metavar="LO:HI",
            help="Huang-Rhys window in meV (repeatable; default the figure's)",
        )
        p.add_argument("--taper", choices=["hann"], help="taper of the gap series (Huang-Rhys)")
        p.add_argument("-o", "--out", help="output folder for CSV, JSON and PNG")

    p = sub.add_parser(
        "series", help="frozen-shell / frozen-core series: fluctuations, FWHM, S per free atom"
    )
    run_args(p)
    p.add_argument("--kind", required=True, choices=["frozen-shell", "frozen-core"])
    p.add_argument(
        "--thickness", type=float, nargs="+", help="shell thickness of each run (unit cells)"
    )
    p.add_argument("--n-free", type=int, nargs="+", help="free atoms of each run")
    p.add_argument("--temperature", type=float, help="trajectory temperature (K)")
    p.set_defaults(func=_cmd_series)

    p = sub.add_parser(
        "temperature-series", help="linewidth against temperature beside the harmonic Γ(T)"
    )
    run_args(p)
    p.add_argument("--temperature", type=float, nargs="+", help="temperature of each run (K)")
    p.add_argument(
        "--reference-temperature",
        type=float,
        help="run whose Huang-Rhys factors give Γ(T) (default the coldest)",
    )
    p.add_argument("--fraction-at", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--fit", default="gaussian", choices=["gaussian", "exponential"])
    p.add_argument("--max-time", type=float, help="longest lag (fs)")
    p.set_defaults(func=_cmd_temperature_series)

    p = sub.add_parser(
        "localisation", help="HOMO/LUMO fraction per element or atom set from CP2K PDOS files"
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder with the .pdos files and inputs")
    p.add_argument("--homo", action="store_true", help="report the HOMO (VBM hole)")
    p.add_argument("--lumo", action="store_true", help="report the LUMO (CBM electron)")
    p.add_argument(
        "--atoms", metavar="SPEC", help="comma-separated kinds or LDOS list names (default all)"
    )
    p.add_argument("--md-project", help="CP2K project of the MD run (default from the inputs)")
    p.add_argument("--relaxed-project", help="CP2K project of the GEO_OPT (default from inputs)")
    p.add_argument("--skip-frames", type=int, default=0, help="steps left out of the average")
    p.add_argument(
        "--cube",
        action="append",
        metavar="FILE",
        help="MO cube (MO_CUBES WRITE_CUBE T) to integrate over atomic regions (repeatable)",
    )
    p.add_argument("-o", "--out", help="output folder for CSV, JSON and PNG")
    p.set_defaults(func=_cmd_localisation)
    return aimd


__all__ = ["add_parser"]
