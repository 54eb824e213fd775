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
- **Ctrl-C.** The worker processes ignore SIGINT; the batch process ends them at once
  (terminate, then kill after 5 s), writes ``summary.csv``, ``failures.csv`` and
  ``run.json`` (``"interrupted": true``, ``not_finished``) for what finished and raises
  :class:`BatchInterrupted`; the CLI then says to rerun the same command, which resumes.
  Further Ctrl-Cs during that clean-up are ignored.
- **One run per output folder.** A batch holds ``OUT/.stemqd.lock`` (:func:`lock_output`);
  a second run on the same folder is refused with the holder's pid, host, start time and
  command. A lock left by a dead run is taken over.
"""

from __future__ import annotations

import contextlib
import glob
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .analysis.statistics import RatioEstimate
from .columns.quality import QualityRecord
from .config import Config, config_hash, config_to_dict, config_to_toml
from .errors import InputError, StemqdError
from .files import (
    atomic_write_text,
    json_text,
    read_json,
    sha256_file,
    to_jsonable,
    write_json,
)
from .io import SUPPORTED_EXTENSIONS, load, write_stack_tiff
from .provenance import record as provenance_record
from .provenance import versions
from .summary import (
    BatchRun,
    ColumnCounts,
    CompareRecord,
    DotSummary,
    InputSummary,
    LatticeSummary,
    RunSummary,
    SpacingSummary,
)

__all__ = [
    "QUALITY_COLUMNS",
    "SUMMARY_COLUMNS",
    "FAILURE_COLUMNS",
    "discover_inputs",
    "stack_names",
    "read_run",
    "read_summary",
    "summary_row",
    "run_stack",
    "run_batch",
    "BatchInterrupted",
    "LOCK_NAME",
    "lock_output",
    "write_stack_results",
    "collect_results",
    "compare_batches",
    "write_compare",
]

#: Leading columns of ``summary.csv`` (per-sublattice spacing columns follow them).
SUMMARY_COLUMNS = [
    "name", "file", "status", "ratio_label", "ratio", "stderr", "ci_low", "ci_high",
    "n_numerator", "n_denominator", "n_columns", "n_used", "dot_edge_nm", "dot_area_nm2",
    "lattice_a_A", "lattice_b_A", "quality_passed", "on_site_intensity_fraction",
    "rms_misfit_nn", "significant_fraction", "input_sha256", "config_hash", "elapsed_s",
    "error_class", "message",
]  # fmt: skip

#: The quality measures (:mod:`stemqd.columns.quality`) copied into ``summary.csv``.
QUALITY_COLUMNS = ("on_site_intensity_fraction", "rms_misfit_nn", "significant_fraction")

# The ratio's fields (:class:`~stemqd.analysis.statistics.RatioEstimate`) copied into summary.csv.
_RATIO_COLUMNS = ("ratio", "stderr", "ci_low", "ci_high", "n_numerator", "n_denominator")

# Counts among the summary columns: written as integers even where a row lacks them.
_COUNT_COLUMNS = ("n_numerator", "n_denominator", "n_columns", "n_used")

#: Columns of ``failures.csv``.
FAILURE_COLUMNS = ["file", "name", "error_class", "message"]

# Leading columns of columns.csv, in reading order; any others follow as the pipeline gives them.
_COLUMN_ORDER = [
    "x_px", "y_px", "x_nm", "y_nm", "site", "label", "i", "j", "depth_uc", "flag",
    "amplitude", "amplitude_err", "x_px_err", "y_px_err", "sigma_x_px", "sigma_x_px_err",
    "sigma_y_px", "sigma_y_px_err", "theta_rad", "theta_rad_err", "offset", "offset_err",
    "volume", "volume_err", "volume_norm", "volume_norm_err", "cross_section", "intensity",
    "count", "count_probability", "count_library", "count_library_low", "count_library_high",
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


def read_summary(folder: str | os.PathLike) -> dict | None:
    """The ``summary.json`` of a stack's result folder, or None if absent or unreadable."""
    return read_json(Path(folder) / "summary.json")


def read_run(folder: str | os.PathLike) -> BatchRun | None:
    """The ``run.json`` of a ``stemqd process`` output folder, or None if absent or
    unreadable."""
    record = read_json(Path(folder) / "run.json")
    return BatchRun.from_dict(record) if isinstance(record, dict) else None


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
    dot = DotSummary.from_dict(summary)
    lattice = LatticeSummary.from_dict(summary) or LatticeSummary()
    columns = ColumnCounts.from_dict(summary)
    row = {
        "name": name,
        "file": file,
        "status": status,
        **_ratio_cells(RatioEstimate.from_dict(summary)),
        "n_columns": columns.total,
        "n_used": columns.used,
        "dot_edge_nm": dot.mean_edge_nm,
        "dot_area_nm2": dot.area_nm2,
        "lattice_a_A": lattice.a_A,
        "lattice_b_A": lattice.b_A,
        **_quality_cells(summary.get("quality")),
        "input_sha256": InputSummary.from_dict(summary).sha256,
        "config_hash": summary.get("config_hash"),
        "elapsed_s": elapsed_s,
        "error_class": None,
        "message": None,
    }
    for key in ("n_numerator", "n_denominator", "n_columns", "n_used"):
        if isinstance(row[key], (int, float, np.number)) and np.isfinite(row[key]):
            row[key] = int(row[key])
    for label, sp in SpacingSummary.from_dict(summary).items():
        row[f"spacing_a_nm_{label}"] = sp.spacing_a_nm_mean
        row[f"spacing_b_nm_{label}"] = sp.spacing_b_nm_mean
    return to_jsonable(row)


def _ratio_cells(ratio: RatioEstimate | None) -> dict:
    """The summary.csv cells of a ratio (None without one)."""
    if ratio is None:
        return dict.fromkeys(("ratio_label", *_RATIO_COLUMNS))
    label = f"{ratio.numerator}:{ratio.denominator}"
    return {"ratio_label": label} | {key: getattr(ratio, key) for key in _RATIO_COLUMNS}


def _quality_cells(quality) -> dict:
    """The summary.csv cells of a quality record (None where a measure does not apply)."""
    record = QualityRecord.from_dict(quality) or QualityRecord()
    return {"quality_passed": record.passed} | {
        key: getattr(record, key) for key in QUALITY_COLUMNS
    }


def _failure_row(name, file, exc: BaseException, elapsed_s) -> dict:
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(_quality_cells(getattr(exc, "quality", None)))
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


def _remove_leftovers(out: Path, names) -> None:
    """Remove the temporary folders of stacks whose writer was killed (Ctrl-C, kill -9).

    Only called while the batch holds the folder's lock, so no other run is writing them.
    A previous result moved aside (``.<name>.old-*``) is put back if its stack has none.
    """
    for name in names:
        for tmp in out.glob(f".{glob.escape(name)}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        for old in sorted(out.glob(f".{glob.escape(name)}.old-*")):
            if (out / name).exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(old, out / name)


def _write_failure(
    folder: Path, file: str, path, exc: StemqdError, config: Config, chash: str
) -> None:
    """``failure.json`` beside ``error.log``: why the stack failed and, for a stack the
    quality gate rejected, the measured quality (what summary.json holds for a processed
    stack), after the provenance block of every output (versions, the full config, the
    input's SHA-256 where it can be read). Not named summary.json, so that a rerun retries
    the stack."""
    readable = Path(path).is_file() and os.access(path, os.R_OK)
    failure = {
        **provenance_record(config_to_dict(config, unset=None), [path] if readable else ()),
        "file": str(file),
        "error_class": type(exc).__name__,
        "message": str(exc),
        "quality": getattr(exc, "quality", None),
        "config_hash": chash,
    }
    with contextlib.suppress(OSError, StemqdError):
        write_json(folder / "failure.json", failure)


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
        summary["run"] = RunSummary(
            name=name,
            file=file,
            elapsed_s=round(elapsed_s, 3),
            finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ).to_dict()
        (tmp / "summary.json").write_text(json_text(summary))
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
                and InputSummary.from_dict(previous).sha256 == sha256_file(path)
            ):
                if progress:
                    progress("skipped")
                return summary_row(
                    name, file, previous, "skipped", RunSummary.from_dict(previous).elapsed_s
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
        _write_failure(folder, file, path, exc, config, chash)
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

#: Name of the lock file a batch holds in its output folder (see :func:`lock_output`).
LOCK_NAME = ".stemqd.lock"

# What a stack is doing after each reported stage: the progress bar names the stage in
# progress, not the one just finished.
_STAGE_LABELS = {
    "load": "reading",
    "align": "aligning frames",
    "background": "removing background",
    "denoise": "denoising",
    "deconvolve": "deconvolving",
    "columns": "fitting columns",
    "statistics": "statistics",
    "analyse": "analysing",
    "figures": "drawing figures",
    "intermediates": "writing intermediates",
    "write": "writing results",
}
_COMPILE_NOTE = " (first stack of a process: compiling, can take a minute)"

# The pool workers' end of the progress queue (set by _init_worker in each worker).
_WORKER_QUEUE = None


class BatchInterrupted(KeyboardInterrupt):
    """A batch ended by Ctrl-C (SIGINT) after writing what had finished.

    Attributes
    ----------
    rows : pandas.DataFrame
        The ``summary.csv`` rows of the stacks that finished (processed, reused or failed).
    total : int
        Number of stacks the batch was asked to process.
    out : Path
        The output folder.
    """

    def __init__(self, rows: pd.DataFrame, total: int, out: Path):
        super().__init__(f"interrupted after {len(rows)} of {total} stacks")
        self.rows, self.total, self.out = rows, total, out


def _lock_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return "holder unknown"
    text = f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started_utc')}"
    return text + (f": {info['command']}" if info.get("command") else "")


@contextlib.contextmanager
def lock_output(folder: str | os.PathLike, command: str | None = None):
    """Hold the lock of an output folder while a batch writes into it.

    Two runs writing the same folder would each rewrite ``summary.csv`` and ``run.json``
    without the other's stacks, so a second run is refused while the first holds the lock.

    Parameters
    ----------
    folder : str or path-like
        The output folder (must exist).
    command : str, optional
        The command line, recorded in the lock file for the message of a refused run.

    Yields
    ------
    dict
        ``pid``, ``host``, ``started_utc``, ``command`` (written to ``folder/.stemqd.lock``)
        and ``took_over``: the holder recorded in a lock file left behind by a run that
        ended without removing it, or None.

    Raises
    ------
    InputError
        Another live process holds the lock; the message names it (pid, host, start time,
        command).

    Notes
    -----
    The lock is an advisory ``flock`` on ``folder/.stemqd.lock``: the kernel releases it
    when the holding process ends, however it ends (``kill -9``, a crash), so a lock file
    left by a dead run is taken over without asking, and no pid needs to be checked. The
    file is removed on release. Without ``fcntl`` (Windows) no lock is taken.
    """
    path = Path(folder) / LOCK_NAME
    if fcntl is None:  # pragma: no cover - Windows
        yield {"took_over": None}
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"{path}: cannot create the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"{folder}: another stemqd run is writing this folder ({_lock_holder(path)}); "
                "wait for it to end, or give another --out"
            ) from None
        # The previous holder may have removed the file between our open and our lock: we
        # would then hold a lock on a deleted file, so start again on the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        left = os.read(fd, 65536)
        took_over = _lock_holder(path) if left.strip() else None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json_text(info).encode(), 0)
        yield info | {"took_over": took_over}
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _executor_failure(task: dict, exc: BaseException) -> dict:
    """Row for a stack whose worker died (killed, out of memory) before returning."""
    return _failure_row(task["name"], task["file"], exc, None) | {
        "message": f"worker failed: {type(exc).__name__}: {exc}".strip()
    }


def _ignore_sigint() -> None:
    """From the first Ctrl-C on, further ones must not break off the clean-up."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_held_back():
    """Hold SIGINT back in this thread while worker processes start.

    The workers inherit the signal mask, so a Ctrl-C can never kill one half-started (with a
    traceback on screen); a Ctrl-C meanwhile reaches this process when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _init_worker(queue) -> None:
    """Pool-worker set-up: Ctrl-C is the parent's to handle (it ends the workers)."""
    global _WORKER_QUEUE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_QUEUE = queue


def _pool_task(index: int, task: dict) -> dict:
    pid = os.getpid()

    def progress(stage: str) -> None:
        _WORKER_QUEUE.put((index, stage, pid))

    progress("start")
    return run_stack(**task, progress=progress)


def _end_processes(processes, timeout_s: float = 5.0) -> None:
    """Terminate `processes`, and kill those still alive after `timeout_s`."""
    for p in processes:
        p.terminate()
    deadline = time.monotonic() + timeout_s
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def _run_serial(tasks, on_done, on_stage):
    pid = os.getpid()
    for i, task in enumerate(tasks):
        on_stage(i, "start", pid)
        on_done(i, run_stack(**task, progress=lambda stage, i=i: on_stage(i, stage, pid)))


def _run_pool(tasks, on_done, on_stage, jobs):
    # Spawned, not forked, workers: a fork copies this process's threads' locks (the
    # progress bar's, numba's) in whatever state they are, which can hang a worker.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    before = set(multiprocessing.active_children())
    executor = None

    def drain():
        while True:
            try:
                on_stage(*queue.get_nowait())
            except Empty:
                return

    try:
        with _sigint_held_back():
            executor = ProcessPoolExecutor(
                max_workers=min(jobs, len(tasks)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(queue,),
            )
            futures = {executor.submit(_pool_task, i, task): i for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                i = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:  # BrokenProcessPool and the like
                    row = _executor_failure(tasks[i], exc)
                on_done(i, row)
    except BaseException:
        # Ctrl-C (or a bug here): end the workers now rather than let them finish their
        # stacks; their results are written atomically, so nothing half-done is left.
        _ignore_sigint()
        _end_processes([p for p in multiprocessing.active_children() if p not in before])
        if executor is not None:
            # The executor's own thread cancels the pending futures: cancelling them here
            # races with its marking them broken (InvalidStateError in that thread).
            executor.shutdown(wait=True, cancel_futures=True)
        queue.cancel_join_thread()
        queue.close()
        raise
    executor.shutdown(wait=True)
    drain()
    queue.close()


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
    futures = []
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
        _ignore_sigint()
        for f in futures:
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
    frame = _integer_counts(frame[columns + [c for c in frame.columns if c not in columns]])
    atomic_write_text(path, frame.to_csv(index=False))


def _integer_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """The count columns as integers (blank, not ``102.0``, beside a missing value)."""
    frame = frame.copy()
    for c in _COUNT_COLUMNS:
        if c in frame:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").round().astype("Int64")
    return frame


def _stage_sequence(process, render, save_intermediates) -> list[str]:
    """The stages a stack reports, in order, from ``start`` to ``write``."""
    from .pipeline import PIPELINE_STAGES

    analyse = list(PIPELINE_STAGES) if process is None else ["analyse"]
    return (
        ["start", "load", *analyse]
        + (["figures"] if render else [])
        + (["intermediates"] if save_intermediates else [])
        + ["write"]
    )


@contextlib.contextmanager
def _heartbeat(bar, period_s: float = 1.0):
    """Redraw `bar` every `period_s` so that its clock runs during a long stage."""
    stop = threading.Event()

    def beat():
        while not stop.wait(period_s):
            bar.refresh()

    thread = threading.Thread(target=beat, name="stemqd-progress", daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=2.0)  # a daemon: never let a redraw hold up the exit


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
        Output folder, created if needed; held with :func:`lock_output` while the batch
        runs, so that a second run on it is refused.
    config : Config
        Effective config for every stack.
    jobs : int
        Number of worker processes (1: in this process). They are started with the
        ``spawn`` method, so a script that calls this with ``jobs > 1`` must guard its entry
        point (``if __name__ == "__main__":``).
    scheduler : str or distributed.Client, optional
        Address of a Dask scheduler (``tcp://host:8786``), or a client, to run the stacks
        on instead of local processes. Workers must see the same file system.
    force : bool
        Recompute stacks whose results are up to date.
    save_intermediates : bool
        Also write the intermediate images as TIFFs.
    process : callable, optional
        ``process(stack, config) -> Analysis`` (default the full pipeline); must be
        picklable (importable by name) for ``jobs > 1`` and Dask.
    render : callable, optional
        ``render(analysis, folder, name)`` figure writer; picklable likewise.
    progress : bool
        Show a progress bar on stderr: over stacks, with the stage each running stack is
        in, or over stages for a single stack.
    log : callable, optional
        Receives one line per failed stack and per note (default: written above the
        progress bar on stderr).
    command : str, optional
        The command line, recorded in ``run.json`` and the lock file.

    Returns
    -------
    pandas.DataFrame
        The rows of ``summary.csv``: one per stack in input order, then one per input that
        named nothing (``status="failed"``).

    Raises
    ------
    InputError
        No input at all, or another run holds the output folder's lock.
    BatchInterrupted
        Ctrl-C (SIGINT): the worker processes are ended at once, ``summary.csv``,
        ``failures.csv`` and ``run.json`` (``"interrupted": true``) record the stacks that
        finished, and running the same batch again resumes (finished stacks are reused).
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
    executor = "dask" if scheduler is not None else "serial" if serial else f"processes ({jobs})"
    single = serial and len(tasks) == 1
    stages = _stage_sequence(process, render, save_intermediates)
    bar = tqdm(
        total=len(stages) - 1 if single else len(tasks),
        unit="stage" if single else "stack",
        desc=names[0] if single else "stacks",
        file=sys.stderr,
        disable=not progress or not tasks,
        dynamic_ncols=True,
        leave=True,
    )
    write = log or (lambda line: tqdm.write(line, file=sys.stderr))
    counts = {"processed": 0, "skipped": 0, "failed": 0}
    running: dict[int, str] = {}
    compiled: set[int] = set()  # processes that have fitted columns once

    def show() -> None:
        if single:
            bar.set_postfix_str(next(iter(running.values()), ""), refresh=True)
            return
        doing = "; ".join(f"{names[i]}: {label}" for i, label in sorted(running.items()))
        tally = f"done={counts['processed']} skipped={counts['skipped']} failed={counts['failed']}"
        bar.set_postfix_str(f"{doing} | {tally}" if doing else tally, refresh=True)

    def on_stage(i: int, stage: str, pid: int) -> None:
        if rows[i] is not None:  # a late message of a finished stack
            return
        if stage == "columns":
            compiled.add(pid)
        if stage == "skipped":
            running[i] = "up to date, reused"
            if single:
                bar.update(bar.total - bar.n)
        elif stage in stages:
            if single and stage != "start":
                bar.update(1)
            k = stages.index(stage)
            if k + 1 < len(stages):
                following = stages[k + 1]
                label = _STAGE_LABELS[following]
                if following == "columns" and pid not in compiled:
                    label += _COMPILE_NOTE
                running[i] = f"{label} {k + 1}/{len(stages) - 1}"
            else:
                running.pop(i, None)
        show()

    def on_done(i: int, row: dict) -> None:
        rows[i] = row
        running.pop(i, None)
        counts[row["status"]] += 1
        if row["status"] == "failed":
            write(f"failed: {row['file']}: {row['error_class']}: {row['message']}")
        if not single:
            bar.update(1)
        show()  # redraws with the new counts: the bar and done= agree

    original_sigint = (
        signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    interrupted = False
    with lock_output(out, command) as lock:
        if lock.get("took_over"):
            write(
                f"note: {out}: took over the lock left by a run that has ended ({lock['took_over']})"
            )
        try:
            with _heartbeat(bar):
                if not tasks:
                    pass
                elif scheduler is not None:
                    _run_dask(tasks, on_done, scheduler)
                elif serial:
                    _run_serial(tasks, on_done, on_stage)
                else:
                    _run_pool(tasks, on_done, on_stage, jobs)
        except KeyboardInterrupt:
            _ignore_sigint()  # until what finished is written
            interrupted = True
        finally:
            bar.close()
        try:
            _remove_leftovers(out, names)
            run = {
                "command": command,
                "started_utc": started.isoformat(timespec="seconds"),
                "elapsed_s": round(time.perf_counter() - t0, 3),
                "executor": executor,
            }
            summary_rows = _write_batch_files(
                out, rows, problems, counts, write, config, interrupted, names, run
            )
        finally:
            if original_sigint is not None:
                signal.signal(signal.SIGINT, original_sigint)
    if interrupted:
        raise BatchInterrupted(pd.DataFrame(summary_rows), len(tasks), out)
    return pd.DataFrame(summary_rows)


def _write_batch_files(out, rows, problems, counts, write, config, interrupted, names, run):
    """Write summary.csv, failures.csv, config.toml and run.json; return the summary rows."""
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
    record = BatchRun(
        **run,
        config_hash=config_hash(config),
        counts=counts,
        interrupted=interrupted,
        not_finished=[n for n, r in zip(names, rows) if r is None],
        versions=versions(),
        stacks=[
            {"name": r["name"], "file": r["file"], "status": r["status"]} for r in summary_rows
        ],
    )
    write_json(out / "run.json", record.to_dict())
    return summary_rows


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
        run = RunSummary.from_dict(summary)
        rows.append(
            summary_row(
                sub.name,
                run.file or InputSummary.from_dict(summary).path,
                summary,
                status.get(sub.name, "processed"),
                run.elapsed_s,
            )
        )
    if not rows:
        raise InputError(
            f"{folder}: holds no stack results (no <name>/summary.json); "
            "run 'stemqd process ... --out' on it first"
        )
    return _integer_counts(pd.DataFrame(rows))


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
    out: str | os.PathLike | None = None,
) -> dict:
    """Group statistics and tests of the per-dot ratios of several ``process`` folders.

    Parameters
    ----------
    groups : dict of str to path
        Group name to ``stemqd process`` output folder, in display order (at least two).
    permutations, bootstrap, seed, confidence
        Passed to :func:`stemqd.analysis.statistics.compare_groups`.
    out : str or path-like, optional
        Also write the comparison there (:func:`write_compare`), so that
        :func:`stemqd.report.write_report` can report it.

    Returns
    -------
    dict
        ``dots`` (DataFrame: one row per dot with its ``group``), ``groups`` (DataFrame:
        per group ``n``, ``mean``, ``std``, ``sem``, ``min``, ``max``, ``config_hashes``),
        ``tests`` (DataFrame: one row per pair of groups with every output of
        :func:`~stemqd.analysis.statistics.compare_groups`, ``difference`` = mean b - mean a, and
        Holm-adjusted p-values when there are several pairs), ``depth`` (DataFrame: per
        group and depth below the surface, the ``mean``, ``sem`` and ``std`` over the
        ``n_dots`` dots of their ratio at that depth; ``sem`` is NaN from a single dot),
        ``ratio_label`` and ``warnings`` (list of str); where dots have counts
        (``counting.enabled``) also ``thickness`` and ``thickness_stats`` (see
        :func:`write_compare`).

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
    result = {
        "dots": dots,
        "groups": pd.DataFrame(stats_rows),
        "tests": tests,
        "depth": _group_depth(groups, dots),
        **_group_thickness(groups, dots),
        "ratio_label": labels[0] if labels else None,
        "warnings": warnings,
    }
    if out is not None:
        parameters = {
            "permutations": permutations,
            "bootstrap": bootstrap,
            "seed": seed,
            "confidence": confidence,
        }
        write_compare(result, out, groups, parameters)
    return result


def _group_depth(groups: dict, dots: pd.DataFrame) -> pd.DataFrame:
    """Per group and depth: mean and s.e. over the dots of the per-dot ratio at that depth."""
    records = []
    for g, folder in groups.items():
        for name in dots.loc[dots["group"] == g, "name"]:
            for r in (read_summary(Path(folder) / str(name)) or {}).get("ratio_by_depth") or []:
                records.append({"group": g, "name": name} | r)
    columns = ["group", "depth_uc", "n_dots", "mean", "sem", "std", "n_numerator", "n_denominator"]
    if not records:
        return pd.DataFrame(columns=columns)
    per_dot = pd.DataFrame(records)
    per_dot["ratio"] = pd.to_numeric(per_dot["ratio"], errors="coerce")
    rows = []
    for (g, depth), d in per_dot.groupby(["group", "depth_uc"], sort=False):
        r = d["ratio"].dropna().to_numpy(float)
        rows.append(
            {
                "group": g,
                "depth_uc": int(depth),
                "n_dots": len(r),
                "mean": r.mean() if len(r) else np.nan,
                "sem": r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else np.nan,
                "std": r.std(ddof=1) if len(r) > 1 else np.nan,
                "n_numerator": int(pd.to_numeric(d["n_numerator"]).fillna(0).sum()),
                "n_denominator": int(pd.to_numeric(d["n_denominator"]).fillna(0).sum()),
            }
        )
    order = {g: k for k, g in enumerate(groups)}
    frame = pd.DataFrame(rows, columns=columns)
    frame["order"] = frame["group"].map(order)
    return frame.sort_values(["order", "depth_uc"]).drop(columns="order").reset_index(drop=True)


def _group_thickness(groups: dict, dots: pd.DataFrame) -> dict:
    """Per group and column type: the counted thickness of the dots that have counts
    (``counting.enabled``; ``count_library`` where a dot has it, else ``count``), pooled
    over their columns (``thickness``: fraction per count), and its mean, standard
    deviation and the s.e. of the dots' means (``thickness_stats``)."""
    from .analysis.column_thickness import thickness_distribution

    tables, stats = [], []
    for g, folder in groups.items():
        pooled, per_dot, sources = [], [], set()
        for name in dots.loc[dots["group"] == g, "name"]:
            path = Path(folder) / str(name) / "columns.csv"
            try:
                cols = pd.read_csv(path, usecols=lambda c: c in {"label", "count", "count_library"})
            except (OSError, ValueError):
                continue
            library = "count_library" in cols and cols["count_library"].notna().any()
            source = "count_library" if library else "count"
            if source not in cols or cols[source].isna().all():
                continue
            sources.add(source)
            cols = cols[cols[source].notna()]
            label = cols["label"].fillna("").astype(str) if "label" in cols else "all"
            pooled.append(pd.DataFrame({"label": label, "count": cols[source]}))
            per_dot.append(cols[source].groupby(pooled[-1]["label"]).mean())
        if not pooled:
            continue
        both = pd.concat(pooled, ignore_index=True)
        table, per_label = thickness_distribution(both["count"], both["label"])
        means = pd.concat(per_dot, axis=1)
        n_dots = means.notna().sum(axis=1)
        tables.append(table.assign(group=g, n_dots=table["label"].map(n_dots)))
        for label, v in per_label.items():
            m = means.loc[label].dropna().to_numpy(float)
            stats.append(
                {"group": g, "label": label, "n_dots": len(m)}
                | v
                | {
                    "sem_dots": m.std(ddof=1) / np.sqrt(len(m)) if len(m) > 1 else np.nan,
                    "thickness_from": " ".join(sorted(sources)),
                }
            )
    if not tables:
        return {}
    return {
        "thickness": pd.concat(tables, ignore_index=True),
        "thickness_stats": pd.DataFrame(stats),
    }


def write_compare(
    result: dict, out: str | os.PathLike, groups: dict, parameters: dict | None = None
) -> Path:
    """Write a comparison into `out`: the tables and ``compare.json``, which the report reads.

    Parameters
    ----------
    result : dict
        :func:`compare_batches`'s result.
    out : str or path-like
        Output folder, created if needed.
    groups : dict of str to path
        The groups compared (name to ``stemqd process`` folder), recorded with their
        folders' absolute paths.
    parameters : dict, optional
        The test settings, recorded.

    Returns
    -------
    Path
        ``out/compare.json``. Beside it: ``dots.csv`` (one row per dot), ``groups.csv``
        (per-group statistics), ``tests.csv`` (per pair of groups) and ``depth.csv`` (per
        group and depth: ``n_dots``, ``mean``, ``sem``, ``std`` of the dots' ratios and the
        numbers of columns); where dots were counted also ``thickness.csv`` (per group, type
        and count: ``n_columns``, ``fraction``, ``n_dots``) and ``thickness_stats.csv`` (per
        group and type: ``n_dots``, ``n_columns``, ``mean``, ``std``, ``median``, ``min``,
        ``max``, ``sem_dots``, ``thickness_from``).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    counted = [k for k in ("thickness", "thickness_stats") if k in result]
    for table in ("dots", "groups", "tests", "depth", *counted):
        atomic_write_text(out / f"{table}.csv", result[table].to_csv(index=False))
    inputs = [
        Path(folder) / str(name) / "summary.json"
        for g, folder in groups.items()
        for name in result["dots"].loc[result["dots"]["group"] == g, "name"]
    ]
    data = CompareRecord(
        **provenance_record(parameters, [p for p in inputs if p.is_file()]),
        groups={g: str(Path(d).resolve()) for g, d in groups.items()},
        ratio_label=result["ratio_label"],
        group_stats=to_jsonable(result["groups"]),
        tests=to_jsonable(result["tests"]),
        depth=to_jsonable(result["depth"]),
        **{k: to_jsonable(result[k]) for k in counted},
        dots=to_jsonable(result["dots"]),
        warnings=result["warnings"],
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_json(out / "compare.json", data.to_dict())
    return out / "compare.json"
