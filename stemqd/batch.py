"""Batch processing of many stacks: discovery, resumable runs, parallel and Dask execution.

:func:`run_batch` is what ``stemqd process`` does. It finds the stacks named by files,
folders and globs, runs the pipeline on each one and writes, per stack, a folder
``OUT/<name>/`` with ``columns.csv``, ``summary.json`` and whatever the ``render`` callback
draws (the CLI passes :func:`stemqd.report.write_stack_figures`), and for the whole batch
``OUT/summary.csv`` (one row per stack) and ``OUT/failures.csv`` (one row per failed stack).

Guarantees
----------
- **Per-file isolation.** A stack that fails (a :class:`~stemqd.errors.StemqdError`, or any
  other exception) becomes one failure row and one line on screen; the others go on. The
  message, and for unexpected errors the traceback, go to ``OUT/<name>/error.log``.
- **Atomic results.** A stack's files are written into a hidden temporary folder next to
  ``OUT/<name>``, which is renamed into place as the very last step, so an interrupted run
  (Ctrl-C, a killed worker) never leaves a half-written result under the final name.
  Batch-level files are written with :func:`stemqd.files.atomic_write`.
- **Resume.** A stack whose ``summary.json`` records the same input SHA-256 and the same
  config hash is skipped (status ``skipped``) unless ``force`` is set.
- **Same numbers everywhere.** The serial, process-pool and Dask paths run the same
  :func:`run_stack` on the same arguments.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .config import Config, config_hash, config_to_toml
from .errors import InputError, StemqdError
from .files import atomic_write_text, sha256_file, to_jsonable
from .io import SUPPORTED_EXTENSIONS, load, write_stack_tiff
from .provenance import versions

__all__ = [
    "SUMMARY_COLUMNS",
    "FAILURE_COLUMNS",
    "discover_inputs",
    "stack_names",
    "read_summary",
    "summary_row",
    "run_stack",
    "run_batch",
]

#: Leading columns of ``summary.csv`` (per-sublattice spacing columns follow them).
SUMMARY_COLUMNS = [
    "name", "file", "status", "ratio_label", "ratio", "stderr", "ci_low", "ci_high",
    "n_numerator", "n_denominator", "n_columns", "n_used", "dot_edge_nm", "dot_area_nm2",
    "lattice_a_A", "lattice_b_A", "input_sha256", "config_hash", "elapsed_s", "error_class",
    "message",
]  # fmt: skip

#: Columns of ``failures.csv``.
FAILURE_COLUMNS = ["file", "name", "error_class", "message"]

# Leading columns of columns.csv, in reading order; any others follow as the pipeline gives them.
_COLUMN_ORDER = [
    "x_px", "y_px", "x_nm", "y_nm", "site", "label", "i", "j", "depth_uc", "flag",
    "amplitude", "amplitude_err", "x_px_err", "y_px_err", "sigma_x_px", "sigma_x_px_err",
    "sigma_y_px", "sigma_y_px_err", "theta_rad", "theta_rad_err", "offset", "offset_err",
    "volume", "volume_err", "cross_section", "intensity",
]  # fmt: skip


# --------------------------------------------------------------------------------------
# Inputs


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _is_stack_path(p: Path) -> bool:
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS or p.name.startswith("."):
        return False
    return p.is_file() or (ext == ".zspy" and p.is_dir())


def discover_inputs(
    inputs: Iterable[str | os.PathLike],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders and globs into the list of stacks to process.

    Parameters
    ----------
    inputs : iterable of str or path-like
        A file is taken as it is, whatever its extension (:func:`stemqd.io.load` then says
        if it cannot be read). A folder contributes its files with a supported extension
        (not recursively; ``.zspy`` stores count as files). A glob (``*``, ``?``, ``[``;
        ``**`` recurses) contributes its matches with a supported extension.

    Returns
    -------
    paths : list of Path
        Unique stacks (by real path), in the order given, folders and globs sorted.
    problems : list of (str, str)
        Inputs that named nothing usable, with the reason: a folder without images, a glob
        without matches.
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            paths.append(p)

    for item in inputs:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_dir() and p.suffix.lower() != ".zspy":
            found = sorted(c for c in p.iterdir() if _is_stack_path(c))
            if not found:
                problems.append(
                    (text, f"folder holds no image files ({', '.join(SUPPORTED_EXTENSIONS)})")
                )
            for c in found:
                add(c)
        elif not p.exists() and _has_magic(text):
            found = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            found = [m for m in found if _is_stack_path(m)]
            if not found:
                problems.append((text, "no image file matches this pattern"))
            for m in found:
                add(m)
        else:
            add(p)  # a missing file is reported by load(), with the same wording as elsewhere
    return paths, problems


def stack_names(paths: Sequence[Path]) -> list[str]:
    """A unique output-folder name per stack: the file stem, disambiguated if needed.

    Stems that occur more than once get their parent folder's name as a prefix
    (``core__dot01``); a counter is appended if that is still ambiguous.
    """
    stems = [Path(p).stem if Path(p).suffix else Path(p).name for p in paths]
    counts = pd.Series(stems).value_counts()
    names = [
        f"{Path(p).resolve().parent.name}__{s}" if counts[s] > 1 else s
        for p, s in zip(paths, stems)
    ]
    out, used = [], set()
    for n in names:
        candidate, k = n, 2
        while candidate in used:
            candidate, k = f"{n}-{k}", k + 1
        used.add(candidate)
        out.append(candidate)
    return out


# --------------------------------------------------------------------------------------
# Outputs


def _dumps(obj) -> str:
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def read_summary(folder: str | os.PathLike) -> dict | None:
    """The ``summary.json`` of a stack's result folder, or None if absent or unreadable."""
    try:
        return json.loads((Path(folder) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def summary_row(
    name: str, file: str, summary: dict, status: str, elapsed_s: float | None = None
) -> dict:
    """One ``summary.csv`` row from a stack's summary.

    Parameters
    ----------
    name, file : str
        Output-folder name and input file.
    summary : dict
        :attr:`stemqd.pipeline.Analysis.summary` (or the parsed ``summary.json``).
    status : {"processed", "skipped"}
    elapsed_s : float, optional
        Wall time of the stack, s.
    """
    r = summary.get("ratio") or {}
    dot = summary.get("dot") or {}
    edges = [e for e in (dot.get("edge_lengths_nm") or []) if e is not None]
    lattice = summary.get("lattice") or {}
    columns = summary.get("columns") or {}
    row = {
        "name": name,
        "file": file,
        "status": status,
        "ratio_label": f"{r.get('numerator')}:{r.get('denominator')}" if r else None,
        "ratio": r.get("ratio"),
        "stderr": r.get("stderr"),
        "ci_low": r.get("ci_low"),
        "ci_high": r.get("ci_high"),
        "n_numerator": r.get("n_numerator"),
        "n_denominator": r.get("n_denominator"),
        "n_columns": columns.get("total"),
        "n_used": columns.get("used"),
        "dot_edge_nm": float(np.mean(edges)) if edges else None,
        "dot_area_nm2": dot.get("area_nm2"),
        "lattice_a_A": lattice.get("a_A"),
        "lattice_b_A": lattice.get("b_A"),
        "input_sha256": (summary.get("input") or {}).get("sha256"),
        "config_hash": summary.get("config_hash"),
        "elapsed_s": elapsed_s,
        "error_class": None,
        "message": None,
    }
    for key in ("n_numerator", "n_denominator", "n_columns", "n_used"):
        if isinstance(row[key], (int, float, np.number)) and np.isfinite(row[key]):
            row[key] = int(row[key])
    for label, sp in (summary.get("spacing") or {}).items():
        row[f"spacing_a_nm_{label}"] = (sp or {}).get("spacing_a_nm_mean")
        row[f"spacing_b_nm_{label}"] = (sp or {}).get("spacing_b_nm_mean")
    return to_jsonable(row)


def _failure_row(name, file, exc: BaseException, elapsed_s) -> dict:
    row = dict.fromkeys(SUMMARY_COLUMNS)
    message = str(exc) or repr(exc)
    # io messages start with the path; the row already names the file
    for prefix in (f"{file}: ",):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    row.update(
        name=name,
        file=file,
        status="failed",
        elapsed_s=elapsed_s,
        error_class=type(exc).__name__,
        message=" ".join(message.split()),
    )
    return row


def _make_dir_like_open(path: Path) -> None:
    """mkdtemp creates 0700; give the folder the permissions ``mkdir`` would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)


def _replace_folder(tmp: Path, final: Path) -> None:
    """Move the finished folder `tmp` to `final`, replacing any previous result."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_error_log(folder: Path, text: str) -> Path | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "error.log", text)
        return folder / "error.log"
    except (OSError, StemqdError):
        return None


def _columns_table(columns: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in _COLUMN_ORDER if c in columns.columns]
    return columns[first + [c for c in columns.columns if c not in first]]


def write_stack_results(
    folder,
    analysis,
    *,
    name: str,
    file: str,
    elapsed_s: float,
    render: Callable | None = None,
    save_intermediates: bool = False,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write one stack's results into `folder`, atomically as a whole.

    Parameters
    ----------
    folder : path-like
        Final result folder ``OUT/<name>``; its parent must exist.
    analysis : stemqd.pipeline.Analysis
    name, file : str
        Stack name and input file, recorded in ``summary.json`` under ``run``.
    elapsed_s : float
        Processing time so far, s.
    render : callable, optional
        ``render(analysis, folder, name)`` draws figures (e.g. ``overlay.png``) into the
        temporary folder.
    save_intermediates : bool
        Also write every intermediate image (and the PSFs) as calibrated float32 TIFFs under
        ``intermediates/``.
    progress : callable, optional
        Called with a stage name as each part is done.
    """
    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        _make_dir_like_open(tmp)
        pixel = float(analysis.summary.get("pixel_size_A"))
        _columns_table(analysis.columns).to_csv(tmp / "columns.csv", index=False)
        summary = dict(analysis.summary)
        summary["run"] = {
            "name": name,
            "file": file,
            "elapsed_s": round(elapsed_s, 3),
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "summary.json").write_text(_dumps(summary))
        if render is not None:
            render(analysis, tmp, name)
            if progress:
                progress("figures")
        if save_intermediates:
            inter = tmp / "intermediates"
            inter.mkdir()
            for k, (stage, image) in enumerate(analysis.images.items()):
                write_stack_tiff(
                    inter / f"{k:02d}_{stage}.tif", np.asarray(image, np.float32), pixel
                )
            for key in ("psf_initial", "psf"):
                psf = analysis.extra.get(key)
                if psf is not None:
                    write_stack_tiff(inter / f"{key}.tif", np.asarray(psf, np.float32), pixel)
            if progress:
                progress("intermediates")
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------
# One stack


def _default_process():
    from .pipeline import process_stack

    return process_stack


def run_stack(
    path: str,
    name: str,
    out_dir: str,
    config: Config,
    *,
    file: str | None = None,
    force: bool = False,
    save_intermediates: bool = False,
    process: Callable | None = None,
    render: Callable | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Process one stack into ``out_dir/name``, or reuse an up-to-date result.

    Never raises for a problem of this stack (only for :class:`KeyboardInterrupt` and
    :class:`SystemExit`): a failure is returned as a row with ``status="failed"``, and the
    message (plus the traceback of an unexpected exception) written to
    ``out_dir/name/error.log``.

    Parameters
    ----------
    path : str
        The stack file (absolute, so that Dask workers in another folder find it).
    name : str
        Output-folder name.
    out_dir : str
        Batch output folder (must exist).
    config : Config
        Effective config; ``config.acquisition.pixel_size_A`` overrides the file's
        calibration.
    file : str, optional
        The input as the user wrote it, for messages and tables (default `path`).
    force : bool
        Recompute even if an up-to-date result exists.
    save_intermediates : bool
        See :func:`write_stack_results`.
    process : callable, optional
        ``process(stack, config) -> Analysis``; default :func:`stemqd.pipeline.process_stack`.
    render : callable, optional
        See :func:`write_stack_results`.
    progress : callable, optional
        Called with the name of each finished stage (``load``, ``analyse``, ...).

    Returns
    -------
    dict
        The ``summary.csv`` row (see :func:`summary_row`), ``status`` one of ``processed``,
        ``skipped``, ``failed``.
    """
    file = path if file is None else file
    t0 = time.perf_counter()
    folder = Path(out_dir) / name
    chash = config_hash(config)
    try:
        if not force and Path(path).exists():
            previous = read_summary(folder)
            if (
                previous is not None
                and previous.get("config_hash") == chash
                and (folder / "columns.csv").is_file()
                and (not save_intermediates or (folder / "intermediates").is_dir())
                and (previous.get("input") or {}).get("sha256") == sha256_file(path)
            ):
                if progress:
                    progress("skipped")
                return summary_row(
                    name, file, previous, "skipped", (previous.get("run") or {}).get("elapsed_s")
                )
        stack = load(path, config.acquisition.pixel_size_A)
        if progress:
            progress("load")
        if process is None:
            # The pipeline reports its own stages (pipeline.PIPELINE_STAGES).
            analysis = _default_process()(stack, config, progress=progress)
        else:
            analysis = process(stack, config)
            if progress:
                progress("analyse")
        write_stack_results(
            folder,
            analysis,
            name=name,
            file=file,
            elapsed_s=time.perf_counter() - t0,
            render=render,
            save_intermediates=save_intermediates,
            progress=progress,
        )
        if progress:
            progress("write")
        return summary_row(name, file, analysis.summary, "processed", time.perf_counter() - t0)
    except StemqdError as exc:
        _write_error_log(folder, f"{file}\n{type(exc).__name__}: {exc}\n")
        return _failure_row(name, file, exc, time.perf_counter() - t0)
    except Exception as exc:  # an unexpected bug must not stop the other stacks
        log = _write_error_log(folder, f"{file}\n{traceback.format_exc()}")
        row = _failure_row(name, file, exc, time.perf_counter() - t0)
        row["message"] += (
            f" (unexpected error; traceback in {log})" if log else " (unexpected error)"
        )
        return row


# --------------------------------------------------------------------------------------
# The batch


def _executor_failure(task: dict, exc: BaseException) -> dict:
    """Row for a stack whose worker died (killed, out of memory) before returning."""
    return _failure_row(task["name"], task["file"], exc, None) | {
        "message": f"worker failed: {type(exc).__name__}: {exc}".strip()
    }


def _run_serial(tasks, on_done, stage_progress):
    for i, task in enumerate(tasks):
        on_done(i, run_stack(**task, progress=stage_progress))


def _run_pool(tasks, on_done, jobs):
    executor = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)))
    try:
        futures = {executor.submit(run_stack, **task): i for i, task in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # BrokenProcessPool and the like
                row = _executor_failure(tasks[i], exc)
            on_done(i, row)
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _run_dask(tasks, on_done, scheduler):
    try:
        from distributed import Client
        from distributed import as_completed as dask_as_completed
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise StemqdError(f"--scheduler needs dask.distributed ({exc})") from None
    own = isinstance(scheduler, str)
    if own:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise StemqdError(
                f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}"
            ) from None
    else:
        client = scheduler
    try:
        futures = [client.submit(run_stack, pure=False, **task) for task in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_as_completed(futures):
            i = index[fut.key]
            try:
                row = fut.result()
            except Exception as exc:  # KilledWorker, lost connection
                row = _executor_failure(tasks[i], exc)
            on_done(i, row)
    except BaseException:
        for f in futures if "futures" in locals() else []:
            f.cancel()
        raise
    finally:
        if own:
            client.close()


def _write_table(path: Path, rows: list[dict], columns: list[str]) -> None:
    frame = pd.DataFrame(rows)
    for c in columns:
        if c not in frame.columns:
            frame[c] = None
    frame = frame[columns + [c for c in frame.columns if c not in columns]]
    atomic_write_text(path, frame.to_csv(index=False))


def run_batch(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: Config,
    *,
    jobs: int = 1,
    scheduler=None,
    force: bool = False,
    save_intermediates: bool = False,
    process: Callable | None = None,
    render: Callable | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> pd.DataFrame:
    """Process many stacks into `out_dir`, resumably, in parallel or on a Dask cluster.

    Parameters
    ----------
    inputs : iterable of str or path-like
        Files, folders and globs (see :func:`discover_inputs`).
    out_dir : str or path-like
        Output folder, created if needed.
    config : Config
        Effective config for every stack.
    jobs : int
        Number of worker processes (1: in this process).
    scheduler : str or distributed.Client, optional
        Address of a Dask scheduler (``tcp://host:8786``), or a client, to run the stacks
        on instead of local processes. Workers must see the same file system.
    force : bool
        Recompute stacks whose results are up to date.
    save_intermediates : bool
        Also write the intermediate images as TIFFs.
    process : callable, optional
        ``process(stack, config) -> Analysis`` (default the full pipeline); must be
        picklable for ``jobs > 1`` and Dask.
    render : callable, optional
        ``render(analysis, folder, name)`` figure writer; picklable likewise.
    progress : bool
        Show a progress bar on stderr: over stacks, or over stages for a single stack.
    log : callable, optional
        Receives one line per failed stack (default: written above the progress bar on
        stderr).
    command : str, optional
        The command line, recorded in ``run.json``.

    Returns
    -------
    pandas.DataFrame
        The rows of ``summary.csv``: one per stack in input order, then one per input that
        named nothing (``status="failed"``).

    Raises
    ------
    InputError
        No input at all.
    """
    from tqdm.auto import tqdm

    paths, problems = discover_inputs(inputs)
    if not paths and not problems:
        raise InputError("no input given; name image files, folders or globs")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    names = stack_names(paths)
    tasks = [
        dict(
            path=str(p.resolve()) if p.exists() else str(p),
            name=n,
            out_dir=str(out.resolve()),
            config=config,
            file=str(p),
            force=force,
            save_intermediates=save_intermediates,
            process=process,
            render=render,
        )
        for p, n in zip(paths, names)
    ]
    rows: list[dict | None] = [None] * len(tasks)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()

    serial = scheduler is None and (jobs <= 1 or len(tasks) <= 1)
    single = serial and len(tasks) == 1
    from .pipeline import PIPELINE_STAGES

    analyse_stages = len(PIPELINE_STAGES) if process is None else 1
    stage_total = 2 + analyse_stages + bool(render) + bool(save_intermediates)
    bar = tqdm(
        total=stage_total if single else len(tasks),
        unit="stage" if single else "stack",
        desc=names[0] if single else "stacks",
        file=sys.stderr,
        disable=not progress or not tasks,
        dynamic_ncols=True,
        leave=True,
    )
    write = log or (lambda line: tqdm.write(line, file=sys.stderr))
    counts = {"processed": 0, "skipped": 0, "failed": 0}

    def stage_progress(stage: str) -> None:
        if stage == "skipped":
            bar.update(bar.total - bar.n)
        else:
            bar.update(1)
        bar.set_postfix_str(stage, refresh=False)

    def on_done(i: int, row: dict) -> None:
        rows[i] = row
        counts[row["status"]] += 1
        if row["status"] == "failed":
            write(f"failed: {row['file']}: {row['error_class']}: {row['message']}")
        if not single:
            bar.update(1)
            bar.set_postfix(
                done=counts["processed"],
                skipped=counts["skipped"],
                failed=counts["failed"],
                refresh=False,
            )

    try:
        if not tasks:
            pass
        elif scheduler is not None:
            _run_dask(tasks, on_done, scheduler)
        elif serial:
            _run_serial(tasks, on_done, stage_progress if single else None)
        else:
            _run_pool(tasks, on_done, jobs)
    finally:
        bar.close()

    for item, reason in problems:
        row = dict.fromkeys(SUMMARY_COLUMNS)
        row.update(name=None, file=item, status="failed", error_class="InputError", message=reason)
        rows.append(row)
        counts["failed"] += 1
        write(f"failed: {item}: InputError: {reason}")

    summary_rows = [r for r in rows if r is not None]
    _write_table(out / "summary.csv", summary_rows, SUMMARY_COLUMNS)
    failures = [{k: r[k] for k in FAILURE_COLUMNS} for r in summary_rows if r["status"] == "failed"]
    if failures:
        _write_table(out / "failures.csv", failures, FAILURE_COLUMNS)
    else:
        (out / "failures.csv").unlink(missing_ok=True)
    atomic_write_text(
        out / "config.toml", f"# config_hash = {config_hash(config)}\n" + config_to_toml(config)
    )
    run = {
        "command": command,
        "config_hash": config_hash(config),
        "started_utc": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "executor": (
            "dask" if scheduler is not None else "serial" if serial else f"processes ({jobs})"
        ),
        "counts": counts,
        "versions": versions(),
        "stacks": [
            {"name": r["name"], "file": r["file"], "status": r["status"]} for r in summary_rows
        ],
    }
    atomic_write_text(out / "run.json", _dumps(run))
    return pd.DataFrame(summary_rows)


# --------------------------------------------------------------------------------------
# Reading results back, and comparing groups of dots


def collect_results(folder: str | os.PathLike) -> pd.DataFrame:
    """The per-stack rows of a ``stemqd process`` output folder.

    Every ``folder/<name>/summary.json`` gives one row (see :func:`summary_row`), except for
    stacks that ``folder/summary.csv`` lists as failed in the latest run (their old results
    are stale).

    Raises
    ------
    InputError
        The folder does not exist or holds no results.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give the --out folder of 'stemqd process'")
    status = {}
    if (folder / "summary.csv").is_file():
        table = pd.read_csv(folder / "summary.csv")
        status = dict(zip(table["name"].astype(str), table["status"]))
    rows = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        summary = read_summary(sub)
        if summary is None or status.get(sub.name) == "failed":
            continue
        run = summary.get("run") or {}
        rows.append(
            summary_row(
                sub.name,
                run.get("file") or (summary.get("input") or {}).get("path"),
                summary,
                status.get(sub.name, "processed"),
                run.get("elapsed_s"),
            )
        )
    if not rows:
        raise InputError(
            f"{folder}: holds no stack results (no <name>/summary.json); "
            "run 'stemqd process ... --out' on it first"
        )
    return pd.DataFrame(rows)


def _holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error over the pairwise tests)."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out


def compare_batches(
    groups: dict[str, str | os.PathLike],
    *,
    permutations: int = 10000,
    bootstrap: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Group statistics and tests of the per-dot ratios of several ``process`` folders.

    Parameters
    ----------
    groups : dict of str to path
        Group name to ``stemqd process`` output folder, in display order (at least two).
    permutations, bootstrap, seed, confidence
        Passed to :func:`stemqd.analysis.statistics.compare_groups`.

    Returns
    -------
    dict
        ``dots`` (DataFrame: one row per dot with its ``group``), ``groups`` (DataFrame:
        per group ``n``, ``mean``, ``std``, ``sem``, ``min``, ``max``, ``config_hashes``),
        ``tests`` (DataFrame: one row per pair of groups with every output of
        :func:`~stemqd.analysis.statistics.compare_groups`, ``difference`` = mean b - mean a, and
        Holm-adjusted p-values when there are several pairs), ``ratio_label`` and
        ``warnings`` (list of str).

    Raises
    ------
    InputError
        Fewer than two groups, a group without usable ratios, or groups measuring
        different ratios.
    """
    from .analysis.statistics import compare_groups

    if len(groups) < 2:
        raise InputError("compare needs at least two groups, e.g. core=out/core core-shell=out/cs")
    frames, warnings = [], []
    for name, folder in groups.items():
        rows = collect_results(folder)
        rows.insert(0, "group", name)
        bad = rows["ratio"].isna()
        if bad.any():
            warnings.append(
                f"group {name!r}: {int(bad.sum())} dot(s) without a ratio left out "
                f"({', '.join(rows.loc[bad, 'name'].astype(str))})"
            )
        rows = rows[~bad]
        if rows.empty:
            raise InputError(f"group {name!r} ({folder}): no dot with a measured ratio")
        frames.append(rows)
    dots = pd.concat(frames, ignore_index=True)
    labels = sorted(set(dots["ratio_label"].dropna()))
    if len(labels) > 1:
        raise InputError(
            f"the groups measure different ratios ({', '.join(labels)}); "
            "process them with the same material.ratio"
        )
    hashes = {
        g: sorted(set(d["config_hash"].dropna())) for g, d in dots.groupby("group", sort=False)
    }
    if len({h for hs in hashes.values() for h in hs}) > 1:
        warnings.append(
            "the dots were processed with different configs (hashes "
            + "; ".join(f"{g}: {', '.join(h)}" for g, h in hashes.items())
            + "); differences may come from the settings"
        )
    stats_rows = []
    for g in groups:
        r = dots.loc[dots["group"] == g, "ratio"].to_numpy(float)
        stats_rows.append(
            {
                "group": g,
                "n": len(r),
                "mean": r.mean(),
                "std": r.std(ddof=1) if len(r) > 1 else np.nan,
                "sem": r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else np.nan,
                "min": r.min(),
                "max": r.max(),
                "config_hashes": " ".join(hashes.get(g, [])),
            }
        )
    tests = []
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra = dots.loc[dots["group"] == a, "ratio"].to_numpy(float)
            rb = dots.loc[dots["group"] == b, "ratio"].to_numpy(float)
            if min(len(ra), len(rb)) < 2:
                warnings.append(f"{a} vs {b}: fewer than two dots in a group, no test")
            res = compare_groups(
                ra,
                rb,
                permutations=permutations,
                bootstrap=bootstrap,
                seed=seed,
                confidence=confidence,
            )
            tests.append({"group_a": a, "group_b": b} | to_jsonable(res))
    tests = pd.DataFrame(tests)
    if len(tests) > 1:
        for col in ("welch_p", "permutation_p"):
            if col in tests:
                tests[f"{col}_holm"] = _holm(tests[col])
    return {
        "dots": dots,
        "groups": pd.DataFrame(stats_rows),
        "tests": tests,
        "ratio_label": labels[0] if labels else None,
        "warnings": warnings,
    }
